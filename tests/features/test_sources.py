import pandas as pd
import pytest
import sqlalchemy as sa

from features.contract import ContractError
from features.sources import read_folder, read_source, read_sql, write_frame
from features.validate import validate


def small():
    return {
        "customers": pd.DataFrame(
            {"customer_id": ["007", "b"], "signup_date": ["2024-01-01", "2024-01-02"]}
        ),
        "events": pd.DataFrame(
            {
                "customer_id": ["007", "b"],
                "ts": ["2024-02-01", "2024-02-02"],
                "channel": ["web", "app"],
                "event_type": ["purchase", "visit"],
                "amount": [5.0, None],
                "resolved": [None, None],
            }
        ),
        "feedback": pd.DataFrame(
            {"customer_id": ["b"], "ts": ["2024-02-03"], "survey": ["nps"], "score": [9]}
        ),
    }


def test_folder_with_csv_and_parquet_keeps_string_ids(tmp_path):
    raw = small()
    raw["customers"].to_csv(tmp_path / "customers.csv", index=False)
    raw["events"].to_parquet(tmp_path / "events.parquet")
    raw["feedback"].to_csv(tmp_path / "feedback.csv", index=False)
    got = read_folder(tmp_path)
    assert got["churn"] is None
    assert list(got["customers"]["customer_id"]) == ["007", "b"]  # not 7
    result = validate(got)
    assert result.report["events"].kept == 2
    assert result.report["feedback"].kept == 1


def test_sqlite_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'cx.db'}"
    engine = sa.create_engine(url)
    for name, frame in small().items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()
    got = read_source(url)
    assert got["churn"] is None
    result = validate(got)
    assert result.report["customers"].kept == 2
    assert result.tables.events["ts"].iloc[0] == pd.Timestamp("2024-02-01", tz="UTC")


def test_sqlite_missing_required_table_names_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'cx.db'}"
    engine = sa.create_engine(url)
    small()["customers"].to_sql("customers", engine, index=False)
    engine.dispose()
    with pytest.raises(ContractError, match=r"\['events'\] not found in database"):
        read_sql(url)


def test_missing_folder_and_missing_table_are_named(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        read_folder(tmp_path / "nowhere")
    small()["customers"].to_csv(tmp_path / "customers.csv", index=False)
    with pytest.raises(ContractError, match=r"'events' not found .*events\.parquet or events\.csv"):
        read_folder(tmp_path)


def test_unreadable_file_and_ambiguous_table(tmp_path):
    small()["customers"].to_csv(tmp_path / "customers.csv", index=False)
    (tmp_path / "events.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(ContractError, match="cannot read table 'events' from .*events.parquet"):
        read_folder(tmp_path)
    small()["customers"].to_parquet(tmp_path / "customers.parquet")
    with pytest.raises(ContractError, match="ambiguous"):
        read_folder(tmp_path)


def test_write_frame_by_extension(tmp_path):
    frame = pd.DataFrame({"x": [1, 2]})
    write_frame(frame, tmp_path / "a.csv")
    write_frame(frame, tmp_path / "sub" / "a.parquet")
    assert pd.read_csv(tmp_path / "a.csv")["x"].tolist() == [1, 2]
    assert pd.read_parquet(tmp_path / "sub" / "a.parquet")["x"].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        write_frame(frame, tmp_path / "a.xlsx")
