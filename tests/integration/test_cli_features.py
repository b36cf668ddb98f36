"""End to end through the real `retain` console script, in a temporary folder."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

RETAIN = shutil.which("retain") or str(Path(sys.executable).parent / "retain")


def retain(*args, cwd):
    return subprocess.run(
        [RETAIN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("world")
    run = retain("generate", "--out", tmp / "data", "--customers", 800, "--seed", 3, cwd=tmp)
    assert run.returncode == 0, run.stderr
    return tmp


def test_generate_validate_features(world):
    data = world / "data"
    assert {p.name for p in data.iterdir()} >= {
        "customers.parquet",
        "events.parquet",
        "feedback.parquet",
        "churn.parquet",
    }

    run = retain("validate", "--data", data, cwd=world)
    assert run.returncode == 0, run.stderr
    assert "customers" in run.stderr and "quarantined" in run.stderr

    out = world / "features.parquet"
    run = retain("features", "--data", data, "--as-of", "2025-06-01", "--out", out, cwd=world)
    assert run.returncode == 0, run.stderr
    frame = pd.read_parquet(out)
    assert frame.index.name == "customer_id"
    assert frame.index.is_unique
    assert 100 < len(frame) <= 800
    assert {"tenure_days", "purchases_30d", "nps_last", "sentiment_mean", "segment"} <= set(
        frame.columns
    )

    csv = world / "features.csv"
    run = retain("features", "--data", data, "--as-of", "2025-06-01", "--out", csv, cwd=world)
    assert run.returncode == 0, run.stderr
    assert len(pd.read_csv(csv)) == len(frame)


def test_corrupted_source_is_quarantined_not_crashed(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    events = pd.read_parquet(data / "events.parquet")
    events = pd.concat([events, events.head(3)], ignore_index=True)  # three exact duplicates
    events.loc[10, "customer_id"] = None
    events.to_parquet(data / "events.parquet")
    run = retain("validate", "--data", data, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    q = pd.read_parquet(data / "quarantine" / "events.parquet")
    assert q["reason"].value_counts().to_dict() == {"duplicate row": 3, "missing customer_id": 1}
    assert sorted(q["row_number"]) == [10, len(events) - 3, len(events) - 2, len(events) - 1]


def test_bad_input_exits_non_zero_with_a_clear_message(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    pd.read_parquet(data / "events.parquet").drop(columns=["ts"]).to_parquet(
        data / "events.parquet"
    )
    run = retain("validate", "--data", data, cwd=tmp_path)
    assert run.returncode == 2
    assert "error:" in run.stderr and "'events'" in run.stderr and "ts" in run.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  windows_days: [7, soon]\n")
    run = retain(
        "features",
        "--data",
        world / "data",
        "--as-of",
        "2025-01-01",
        "--out",
        tmp_path / "f.parquet",
        "--config",
        bad,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert "features.windows_days.1" in run.stderr

    run = retain(
        "features",
        "--data",
        world / "data",
        "--as-of",
        "someday",
        "--out",
        tmp_path / "f.parquet",
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert "--as-of" in run.stderr

    run = retain("validate", "--data", tmp_path / "missing", cwd=tmp_path)
    assert run.returncode == 2
    assert "does not exist" in run.stderr


def test_generate_partitioned_then_features_on_a_local_cluster(tmp_path):
    data = tmp_path / "parted"
    run = retain(
        "generate", "--out", data, "--customers", 700, "--seed", 2, "--partitions", 3,
        "--chunk", 300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "chunk 3/3: 700 of 700 customers" in run.stderr
    assert (data / "manifest.json").is_file() and (data / "events" / "part-00002.parquet").is_file()

    single, spread = tmp_path / "single.parquet", tmp_path / "cluster.parquet"
    run = retain("features", "--data", data, "--as-of", "2025-06-01", "--out", single, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    run = retain(
        "features", "--data", data, "--as-of", "2025-06-01", "--out", spread,
        "--cluster", "local:2", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(spread), pd.read_parquet(single))
    assert len(pd.read_parquet(single)) > 200

    refused = retain("generate", "--out", tmp_path / "x", "--partitions", 2, "--loop", cwd=tmp_path)
    assert refused.returncode == 2 and "cannot be combined with --partitions" in refused.stderr
