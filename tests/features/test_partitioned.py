"""Partitioned folders (features.partitioned) and the gathering of per-partition results
(features.distributed) on small hand-built tables; the runs on a real Dask cluster are in
tests/features/test_distributed.py."""

import json

import numpy as np
import pandas as pd
import pytest

from features.contract import ContractError
from features.distributed import Partition, checked, concat_rows, partitions_of
from features.partitioned import (
    MANIFEST,
    PartitionWriter,
    load_manifest,
    partition_of,
    read_partition,
    write_partitioned,
)
from features.sources import read_folder
from features.validate import TableReport, validate

pytestmark = pytest.mark.unit


def raw():
    ids = [f"C{i}" for i in range(12)]
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ids,
                "signup_date": ["2024-01-01"] * 12,
                "segment": ["a", "b", "c"] * 4,
                "note": [None] * 11 + ["only one"],  # all-null in most parts
            }
        ),
        "events": pd.DataFrame(
            {
                # " C3 " is C3 once validated, so it must travel with C3; C99 is unknown
                "customer_id": [*ids, " C3 ", "C99", None],
                "ts": ["2024-02-01"] * 15,
                "channel": ["web"] * 15,
                "event_type": ["purchase"] * 15,
                "amount": [float(i) for i in range(15)],
                "event_id": [f"e{i}" for i in range(15)],
            }
        ),
        "feedback": None,
        "churn": None,
    }


def test_partition_of_is_fixed_and_follows_validated_ids():
    got = partition_of(pd.Series(["C1", " C1", "C2", None, "12346"]), 7)
    assert got[0] == got[1]
    assert got[3] == 0  # no id: partition 0
    # Ids read as floats (12346.0) are the id "12346" and land with it.
    assert partition_of(pd.Series([12346.0]), 7)[0] == got[4]
    # The hash is part of the folder format: a change would misplace every inbox row.
    ids = pd.Series(["C1", "C2", "C3", "C4"])
    assert (partition_of(ids, 1000) == partition_of(ids.astype("category"), 1000)).all()
    assert partition_of(pd.Series(["C1", "C2", "C3", "C4"]), 1000).tolist() == [
        int(h % 1000) for h in pd.util.hash_array(np.array(["C1", "C2", "C3", "C4"], dtype=object))
    ]


def test_every_table_is_co_partitioned(tmp_path):
    write_partitioned(raw(), tmp_path / "p", 4)
    pieces = [read_partition(tmp_path / "p", i) for i in range(4)]
    assert sum(len(p["customers"]) for p in pieces) == 12
    assert sum(len(p["events"]) for p in pieces) == 15
    for piece in pieces:
        own = set(piece["customers"]["customer_id"])
        ids = piece["events"]["customer_id"].dropna().str.strip()
        assert set(ids) - {"C99"} <= own
        assert piece["feedback"] is None


def test_write_then_read_whole_and_by_partition(tmp_path):
    source = raw()
    manifest = write_partitioned(source, tmp_path / "p", 5)
    assert manifest.tables == ("customers", "events")
    doc = json.loads((tmp_path / "p" / MANIFEST).read_text())
    assert doc["partitions"] == 5 and sum(doc["rows"]["events"]) == 15

    whole = read_folder(tmp_path / "p")  # the ordinary reader sees the manifest
    assert whole["feedback"] is None and whole["churn"] is None
    assert sorted(whole["events"]["event_id"]) == sorted(source["events"]["event_id"])
    parts = [read_partition(tmp_path / "p", i) for i in range(5)]
    assert [len(p["customers"]) for p in parts] == doc["rows"]["customers"]
    # Whole = the partitions in order, and every part has the same column types.
    order = pd.concat([p["events"] for p in parts], ignore_index=True)
    assert whole["events"]["event_id"].tolist() == order["event_id"].tolist()
    assert {str(p["customers"]["note"].dtype) for p in parts} == {"object"}
    # Validation of the whole read keeps and quarantines what it does on the source.
    assert validate(whole).report == validate(source).report


def test_more_partitions_than_customers_gives_empty_parts(tmp_path):
    tiny = {k: (v.iloc[:1] if v is not None else None) for k, v in raw().items()}
    manifest = write_partitioned(tiny, tmp_path / "p", 8)
    assert sum(manifest.rows["customers"]) == 1
    empty = [i for i in range(8) if manifest.rows["customers"][i] == 0]
    assert empty
    got = read_partition(tmp_path / "p", empty[0])
    assert list(got["events"].columns) == list(tiny["events"].columns)
    assert validate(got).report["customers"].read == 0


def test_batches_written_one_at_a_time_equal_one_write(tmp_path):
    whole = raw()
    writer = PartitionWriter(tmp_path / "batched", 3)
    # The first batch's "note" is all None (untyped in Arrow); the second has text.
    for rows in (slice(0, 6), slice(6, 12)):
        customers = whole["customers"].iloc[rows]
        events = whole["events"][whole["events"]["customer_id"].isin(customers["customer_id"])]
        writer.add({"customers": customers, "events": events})
    batched = writer.close()
    once = write_partitioned(
        {
            "customers": whole["customers"],
            "events": whole["events"][
                whole["events"]["customer_id"].isin(whole["customers"]["customer_id"])
            ],
        },
        tmp_path / "once",
        3,
    )
    assert batched.rows == once.rows
    for i in range(3):
        a, b = read_partition(tmp_path / "batched", i), read_partition(tmp_path / "once", i)
        for name in ("customers", "events"):
            pd.testing.assert_frame_equal(
                a[name].astype(str).reset_index(drop=True),
                b[name].astype(str).reset_index(drop=True),
            )
    assert read_folder(tmp_path / "batched")["customers"]["note"].dropna().tolist() == ["only one"]
    with pytest.raises(ValueError, match="closed"):
        writer.add({"customers": whole["customers"]})


def test_a_table_missing_from_the_first_batch_is_refused(tmp_path):
    writer = PartitionWriter(tmp_path / "p", 2)
    writer.add({"customers": raw()["customers"]})
    with pytest.raises(ValueError, match="'events' was absent from the first batch"):
        writer.add({"customers": raw()["customers"], "events": raw()["events"]})


def test_refuses_a_folder_in_use_and_a_bad_count(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "x.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        write_partitioned(raw(), tmp_path / "p", 2)
    with pytest.raises(ValueError, match=">= 1"):
        write_partitioned(raw(), tmp_path / "q", 0)


def test_a_damaged_folder_says_what_is_wrong(tmp_path):
    folder = tmp_path / "p"
    manifest = write_partitioned(raw(), folder, 3)
    manifest.path("events", 1).unlink()
    with pytest.raises(ContractError, match="lacks 1 part file"):
        load_manifest(folder)
    (folder / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ContractError, match="not a Retain partition manifest"):
        read_folder(folder)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(ContractError, match="cannot read the partition manifest"):
        load_manifest(folder)
    write_partitioned(raw(), tmp_path / "q", 2)
    with pytest.raises(ValueError, match="out of range"):
        read_partition(tmp_path / "q", 2)


def test_a_cluster_run_needs_a_partitioned_folder(tmp_path):
    with pytest.raises(ContractError, match="retain partition"):
        partitions_of(str(tmp_path))


def test_inbox_rows_go_to_their_customers_partition(tmp_path):
    write_partitioned(raw(), tmp_path / "p", 4)
    inbox = {
        "events": pd.DataFrame({"customer_id": ["C1", "C2", " C1"], "event_id": ["i1", "i2", "i3"]})
    }
    parts = partitions_of(str(tmp_path / "p"), inbox)
    home = partition_of(pd.Series(["C1", "C2"]), 4)
    got = {p.number: sorted(p.inbox["events"]["event_id"]) for p in parts if p.inbox is not None}
    expected: dict[int, list[str]] = {}
    for pid, ids in ((home[0], ["i1", "i3"]), (home[1], ["i2"])):
        expected.setdefault(int(pid), []).extend(ids)
    assert got == {k: sorted(v) for k, v in expected.items()}
    assert all(isinstance(p, Partition) for p in parts)


def test_concat_rows_unions_categories_as_the_whole_population_would():
    a = pd.DataFrame({"seg": pd.Categorical(["b", "c"]), "x": [1.0, 2.0]}, index=["1", "2"])
    b = pd.DataFrame({"seg": pd.Categorical(["a", None]), "x": [3.0, 4.0]}, index=["3", "4"])
    got = concat_rows([a, b])
    assert list(got["seg"].cat.categories) == ["a", "b", "c"]
    assert got["seg"].tolist()[:3] == ["b", "c", "a"] and pd.isna(got["seg"].iloc[3])
    assert got.index.tolist() == ["1", "2", "3", "4"]
    same = pd.DataFrame({"seg": pd.Categorical(["x"], categories=["z", "x"])})
    kept = concat_rows([same, same])
    assert list(kept["seg"].cat.categories) == ["z", "x"]  # fixed categories keep their order


def test_checked_sums_counts_and_tags_quarantined_rows():
    reports = [
        {"events": TableReport(5, 4, 1, {"unknown customer_id": 1})},
        {"events": TableReport(3, 1, 2, {"unknown customer_id": 1, "bad ts": 1})},
    ]
    quarantine = [
        {"events": pd.DataFrame({"row_number": [2], "reason": ["unknown customer_id"]})},
        {
            "events": pd.DataFrame(
                {"row_number": [0, 1], "reason": ["unknown customer_id", "bad ts"]}
            )
        },
    ]
    got = checked(list(zip(reports, quarantine, strict=True)))
    assert got.report["events"] == TableReport(8, 5, 3, {"unknown customer_id": 2, "bad ts": 1})
    assert got.quarantine["events"]["partition"].tolist() == [0, 1, 1]
    assert "unknown customer_id" in got.summary()
