from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.contract import ContractError
from features.mapping import (
    MappingError,
    apply_mapping,
    load_mapping,
    mapping_from_dict,
    read_export,
)
from features.validate import validate

REPO = Path(__file__).resolve().parents[2]
ONLINE_RETAIL = REPO / "configs" / "mappings" / "online_retail.yaml"
REAL_DATA = REPO.parent / "shared" / "data" / "online_retail"

# InvoiceNo, StockCode, Quantity, InvoiceDate (as the CSV copies write it), UnitPrice,
# CustomerID (as written in the CSV: some copies write floats), Country
LINES = [
    ("536365", "85123A", 6, "12/1/2010 8:26", 2.55, "17850", "United Kingdom"),
    ("536365", "85123A", 6, "12/1/2010 8:26", 2.55, "17850", "United Kingdom"),  # repeated line
    ("536366", "22633", 6, "12/1/2010 8:28", 1.85, "17850.0", "United Kingdom"),
    ("C536379", "D", -1, "12/1/2010 9:41", 27.50, "14527", "United Kingdom"),
    ("536414", "22139", 56, "12/1/2010 11:52", 0.0, None, "United Kingdom"),
    ("539993", "22386", 10, "1/4/2011 10:00", 1.95, "12346", "France"),
    ("540000", "21730", 2, "1/12/2011 9:00", 4.25, "12346", "France"),  # January 12th
    ("C540001", "21730", -2, "1/13/2011 9:00", 4.25, "12346.0", "France"),
    ("540002", "22960", 1, "1/14/2011 10:00", 3.75, None, "United Kingdom"),
]
NO_CUSTOMER = [4, 8]


def csv_export() -> pd.DataFrame:
    frame = pd.DataFrame(
        LINES,
        columns=[
            "InvoiceNo",
            "StockCode",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
            "Country",
        ],
    )
    frame.insert(2, "Description", "ITEM")
    return frame


def excel_export() -> pd.DataFrame:
    """As the original .xlsx holds it: numeric invoice numbers and stock codes, real datetimes,
    CustomerID as float with gaps."""
    frame = csv_export()
    frame["InvoiceNo"] = [int(v) if v.isdigit() else v for v in frame["InvoiceNo"]]
    frame["StockCode"] = [int(v) if v.isdigit() else v for v in frame["StockCode"]]
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"], format="%m/%d/%Y %H:%M")
    frame["CustomerID"] = pd.to_numeric(frame["CustomerID"])
    return frame


def write_export(tmp_path: Path, kind: str) -> Path:
    if kind == "csv":
        path = tmp_path / "data.csv"
        csv_export().to_csv(path, index=False, encoding="latin-1")
    elif kind == "xlsx":
        path = tmp_path / "Online Retail.xlsx"
        excel_export().to_excel(path, index=False)
    else:
        path = tmp_path / "online_retail.parquet"
        csv_export().to_parquet(path)
    return path


@pytest.fixture(scope="module")
def online_retail():
    return load_mapping(ONLINE_RETAIL)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize("kind", ["csv", "xlsx", "parquet"])
def test_online_retail_export_becomes_contract_tables(tmp_path, online_retail, kind):
    path = write_export(tmp_path, kind)
    source = read_export(tmp_path, online_retail)  # the folder holds exactly this one file
    assert source.shape == read_export(path, online_retail).shape == (len(LINES), 8)
    result = validate(apply_mapping(source, online_retail))
    events, customers = result.tables.events, result.tables.customers

    # Only lines without a customer id are quarantined, for that reason, with their provenance.
    report = result.report["events"]
    assert (report.read, report.quarantined) == (len(LINES), len(NO_CUSTOMER))
    assert report.reasons == {"missing customer_id": len(NO_CUSTOMER)}
    assert result.quarantine["events"]["source_row"].astype(int).tolist() == NO_CUSTOMER
    assert result.report["customers"].quarantined == 0

    # Float ids lose their ".0"; a missing id never becomes the text "nan".
    assert sorted(customers["customer_id"]) == ["12346", "14527", "17850"]
    assert set(events["customer_id"].astype(str)) == {"12346", "14527", "17850"}

    assert set(events["channel"]) == {"web"}
    kinds = dict(zip(events["invoice_no"], events["event_type"].astype(str), strict=False))
    assert kinds == {
        "536365": "purchase",
        "536366": "purchase",
        "C536379": "refund",
        "539993": "purchase",
        "540000": "purchase",
        "C540001": "refund",
    }
    refunds = events.loc[events["event_type"] == "refund", "amount"]
    assert refunds.tolist() == pytest.approx([-27.5, -8.5])
    assert (events.loc[events["event_type"] == "purchase", "amount"] > 0).all()

    # The repeated line stays two line items.
    repeated = events.loc[(events["invoice_no"] == "536365") & (events["stock_code"] == "85123A")]
    assert repeated["source_row"].tolist() == [0, 1]
    assert repeated["amount"].tolist() == pytest.approx([15.3, 15.3])

    # Month-first dates: 1/12/2011 is January 12th.
    assert events.loc[events["source_row"] == 6, "ts"].item() == utc("2011-01-12 09:00")

    by_id = customers.set_index("customer_id")
    assert by_id.loc["17850", "signup_date"] == utc("2010-12-01 08:26")
    assert by_id.loc["14527", "signup_date"] == utc("2010-12-01 09:41")
    assert by_id.loc["12346", "signup_date"] == utc("2011-01-04 10:00")
    assert by_id["region"].to_dict() == {
        "17850": "United Kingdom",
        "14527": "United Kingdom",
        "12346": "France",
    }

    # Nothing lost: every line with a customer id is kept with its value.
    has_id = source["CustomerID"].notna()
    expected = (source["Quantity"] * source["UnitPrice"])[has_id].sum()
    assert events["amount"].sum() == pytest.approx(expected)
    assert report.kept == has_id.sum()


def test_apply_mapping_leaves_the_source_alone(online_retail):
    source = excel_export()
    before = source.copy()
    apply_mapping(source.set_axis(range(100, 100 + len(source))), online_retail)
    apply_mapping(source, online_retail)
    pd.testing.assert_frame_equal(source, before)


def mapping(columns: dict, **table) -> dict:
    return {"tables": {"events": {"columns": columns, **table}}}


def test_filter_keeps_row_numbers_of_the_export_and_first_case_wins():
    m = mapping_from_dict(
        mapping(
            {
                "customer_id": "CustomerID",  # shorthand for {from: CustomerID}
                "kind": {
                    "cases": [
                        {"when": "Quantity < 0", "value": "refund"},
                        {"when": "Quantity < 10", "value": "small"},
                    ],
                    "default": "large",
                },
                "row": {"row_number": True},
                "n": {"expr": "Quantity * 2"},
                "flag": {"value": True},
            },
            filter="Quantity != 6",
        )
    )
    out = apply_mapping(csv_export(), m)["events"]
    assert out["row"].tolist() == [3, 4, 5, 6, 7, 8]
    assert out["kind"].tolist() == ["refund", "large", "large", "small", "refund", "small"]
    assert out["n"].tolist() == [-2, 112, 20, 4, -4, 2]
    assert out["flag"].all()
    assert out["customer_id"].iloc[0] == "14527"


def test_id_cast_normalises_ids_and_keeps_missing_missing():
    m = mapping_from_dict(mapping({"customer_id": {"from": "id", "cast": "id"}}))
    floats = pd.DataFrame({"id": [12346.0, np.nan, 17850.0]})
    texts = pd.DataFrame({"id": ["12346.0", None, " 00042 ", "", "A1", 17850.0, 7]})
    assert apply_mapping(floats, m)["events"]["customer_id"].tolist() == ["12346", pd.NA, "17850"]
    assert apply_mapping(texts, m)["events"]["customer_id"].tolist() == [
        "12346",
        pd.NA,
        "00042",
        pd.NA,
        "A1",
        "17850",
        "7",
    ]


def test_casts_keep_values_they_cannot_convert_so_validation_quarantines_them():
    m = mapping_from_dict(
        {
            "tables": {
                "customers": {
                    "columns": {
                        "customer_id": {"from": "id", "cast": "id"},
                        "signup_date": {"from": "day", "cast": "datetime", "format": "%d.%m.%Y"},
                        "visits": {"from": "visits", "cast": "int"},
                        "vip": {"from": "vip", "cast": "bool"},
                    }
                },
                "events": {
                    "columns": {
                        "customer_id": {"from": "id", "cast": "id"},
                        "ts": {"from": "day", "cast": "datetime", "dayfirst": True},
                        "channel": {"value": "app"},
                        "event_type": {"value": "visit"},
                    }
                },
            }
        }
    )
    source = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "day": ["02.01.2024", "31.12.2023", "soon"],
            "visits": ["3", "4.0", "many"],
            "vip": ["yes", "no", None],
        }
    )
    raw = apply_mapping(source, m)
    customers = raw["customers"]
    assert customers["signup_date"].tolist()[:2] == [
        "2024-01-02 00:00:00+00:00",
        "2023-12-31 00:00:00+00:00",
    ]
    assert customers["signup_date"].iloc[2] == "soon"
    assert customers["visits"].tolist() == ["3", "4", "many"]
    assert customers["vip"].tolist() == [True, False, pd.NA]
    result = validate(raw)
    assert result.report["customers"].reasons == {"unparseable signup_date": 1}
    assert result.tables.customers["signup_date"].tolist() == [utc("2024-01-02"), utc("2023-12-31")]


def test_group_by_leaves_out_rows_without_a_key():
    m = mapping_from_dict(
        {
            "tables": {
                "customers": {
                    "columns": {
                        "customer_id": {"from": "CustomerID", "cast": "id"},
                        "signup_date": {"from": "InvoiceDate", "cast": "datetime"},
                        "lines": {"from": "Quantity"},
                        "units": {"from": "Quantity"},
                        "last_country": {"from": "Country"},
                    },
                    "group_by": "customer_id",
                    "aggregate": {
                        "signup_date": "max",
                        "lines": "count",
                        "units": "sum",
                        "last_country": "last",
                    },
                }
            }
        }
    )
    out = apply_mapping(csv_export(), m)["customers"]
    assert out["customer_id"].tolist() == ["17850", "14527", "12346"]  # export order
    assert out["lines"].tolist() == [3, 1, 3]
    assert out["units"].tolist() == [18, -1, 10]
    assert out["signup_date"].iloc[2] == utc("2011-01-13 09:00")


# Mapping errors


def test_unknown_key_names_its_path_and_what_is_allowed():
    bad = mapping({"ts": {"from": "InvoiceDate", "kast": "datetime"}})
    with pytest.raises(MappingError, match=r"tables\.events\.columns\.ts\.kast: unknown key") as e:
        mapping_from_dict(bad)
    assert "'cast'" in str(e.value)
    with pytest.raises(MappingError, match=r"source\.csv\.encodng: unknown key"):
        mapping_from_dict({"source": {"csv": {"encodng": "latin-1"}}, **mapping({"a": "b"})})


def test_unknown_table_and_malformed_columns_are_named(tmp_path):
    with pytest.raises(MappingError, match=r"unknown table\(s\) \['event'\]"):
        mapping_from_dict({"tables": {"event": {"columns": {"a": "b"}}}})
    with pytest.raises(MappingError, match=r"tables\.events\.columns\.a: .*exactly one of"):
        mapping_from_dict(mapping({"a": {"from": "x", "value": 1}}))
    with pytest.raises(MappingError, match=r"tables\.events\.columns\.a\.cast: .*'id'"):
        mapping_from_dict(mapping({"a": {"from": "x", "cast": "integer"}}))
    with pytest.raises(MappingError, match=r"columns \['region'\] need an aggregate"):
        mapping_from_dict(
            mapping({"customer_id": "id", "region": "Country"}, group_by="customer_id")
        )
    path = tmp_path / "m.yaml"
    path.write_text("tables: [events", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(path)
    with pytest.raises(MappingError, match="cannot read mapping file"):
        load_mapping(tmp_path / "absent.yaml")


def test_load_mapping_reads_yaml(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(mapping({"customer_id": "CustomerID"})), encoding="utf-8")
    assert load_mapping(path).tables["events"].columns["customer_id"].from_ == "CustomerID"


def test_missing_source_column_is_named_with_the_available_ones():
    m = mapping_from_dict(mapping({"customer_id": {"from": "CustomerId", "cast": "id"}}))
    with pytest.raises(MappingError) as e:
        apply_mapping(csv_export(), m)
    text = str(e.value)
    assert "tables.events.columns.customer_id" in text and "'CustomerId' not found" in text
    assert "did you mean 'CustomerID'" in text and "'Country'" in text


def test_bad_expression_names_table_column_and_expression():
    m = mapping_from_dict(mapping({"amount": {"expr": "Quantity * UnitPrise"}}))
    with pytest.raises(MappingError) as e:
        apply_mapping(csv_export(), m)
    text = str(e.value)
    assert "tables.events.columns.amount" in text
    assert "'Quantity * UnitPrise'" in text and "UnitPrise" in text and "'UnitPrice'" in text

    m = mapping_from_dict(mapping({"a": {"value": 1}}, filter="Quantity +"))
    with pytest.raises(MappingError, match=r"tables\.events\.filter: expression 'Quantity \+'"):
        apply_mapping(csv_export(), m)

    not_a_condition = mapping({"a": {"cases": [{"when": "Quantity * 2", "value": 1}]}})
    with pytest.raises(MappingError, match=r"cases\.0\.when: condition 'Quantity \* 2' must be"):
        apply_mapping(csv_export(), mapping_from_dict(not_a_condition))


def test_export_folder_must_hold_exactly_one_data_file(tmp_path, online_retail):
    (tmp_path / "README.md").write_text("about the data", encoding="utf-8")
    with pytest.raises(ContractError, match=r"holds no data file.*README\.md"):
        read_export(tmp_path, online_retail)
    write_export(tmp_path, "csv")
    (tmp_path / "LICENSE.txt").write_text("CC BY 4.0", encoding="utf-8")
    assert len(read_export(tmp_path, online_retail)) == len(LINES)  # docs beside it are ignored
    write_export(tmp_path, "parquet")
    with pytest.raises(
        ContractError, match=r"2 data files \['data\.csv', 'online_retail\.parquet'\]"
    ):
        read_export(tmp_path, online_retail)


def test_one_export_in_several_formats_reads_the_quickest(tmp_path, online_retail):
    write_export(tmp_path, "parquet")  # online_retail.parquet
    # "Online Retail.xlsx" is the same export by name; a broken one proves it is not read.
    (tmp_path / "Online Retail.xlsx").write_text("not a workbook", encoding="utf-8")
    assert len(read_export(tmp_path, online_retail)) == len(LINES)


def test_unreadable_export_names_the_path(tmp_path, online_retail):
    absent = tmp_path / "nowhere" / "retail.csv"
    with pytest.raises(ContractError, match=rf"cannot read export {absent}"):
        read_export(absent, online_retail)
    broken = tmp_path / "broken.xlsx"
    broken.write_text("not a workbook", encoding="utf-8")
    with pytest.raises(ContractError, match=rf"cannot read export {broken}"):
        read_export(broken, online_retail)
    other = tmp_path / "retail.json"
    other.write_text("{}", encoding="utf-8")
    with pytest.raises(ContractError, match="unsupported file type"):
        read_export(other, online_retail)


def test_csv_options_come_from_the_mapping(tmp_path):
    path = tmp_path / "export.tsv"
    path.write_text("id\tamount\n007\t1,5\n", encoding="utf-16")
    m = mapping_from_dict(
        {
            "source": {"csv": {"encoding": "utf-16", "decimal": ",", "dtype": {"id": "str"}}},
            **mapping({"customer_id": "id", "amount": "amount"}),
        }
    )
    out = apply_mapping(read_export(path, m), m)["events"]
    assert out.to_dict("records") == [{"customer_id": "007", "amount": 1.5}]


@pytest.mark.data
def test_online_retail_real_export(online_retail):
    if not REAL_DATA.is_dir():
        pytest.skip(
            "../shared/data/online_retail not present; put the UCI Online Retail export "
            "(the .xlsx or a CSV copy) there to run this test"
        )
    source = read_export(REAL_DATA, online_retail)
    result = validate(apply_mapping(source, online_retail))
    has_id = source["CustomerID"].notna()
    report = result.report["events"]
    assert report.read == len(source)
    assert report.quarantined == (~has_id).sum()
    assert report.reasons == {"missing customer_id": int((~has_id).sum())}
    assert result.report["customers"].quarantined == 0
    expected = (source["Quantity"] * source["UnitPrice"])[has_id].sum()
    assert result.tables.events["amount"].sum() == pytest.approx(expected, rel=1e-9)
    start, end = result.tables.events["ts"].agg(["min", "max"])
    assert utc("2010-12-01") <= start < end < utc("2012-01-01")
