"""Per-partition runs on a real local Dask cluster of 2 worker processes equal the single-process
run on the whole folder, exactly: features, labels and the reconciliation, over random worlds
(sizes, partition counts and cutoffs drawn from a seed), with dirty rows and inbox rows."""

import numpy as np
import pandas as pd
import pytest

from configs import load_settings
from features.build import build_features
from features.distributed import build_features_on, build_labels_on, partitions_of
from features.inbox import with_inbox
from features.labels import build_labels
from features.partitioned import write_partitioned
from features.sources import read_source
from features.synthetic import generate_world
from features.validate import validate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client


def dirty(world: dict, rng: np.random.Generator) -> dict:
    """The world with rows validation must quarantine or normalise: unknown customers, a bad
    channel, ids with spaces, a repeated row, and a static attribute only some customers have."""
    events = world["events"]
    picked = events.sample(n=6, random_state=int(rng.integers(1 << 31)))
    bad = picked.copy()
    bad["customer_id"] = [
        "NOBODY",
        " " + picked["customer_id"].iloc[1] + " ",
        *picked["customer_id"].iloc[2:],
    ]
    bad["channel"] = ["web", "web", "carrier pigeon", *picked["channel"].iloc[3:]]
    customers = world["customers"].copy()
    customers["tier_label"] = np.where(rng.random(len(customers)) < 0.1, "gold", None)
    return {**world, "customers": customers, "events": pd.concat([events, bad, picked.iloc[:1]])}


def inbox_rows(world: dict, rng: np.random.Generator, end: pd.Timestamp) -> dict:
    ids = world["customers"]["customer_id"].sample(n=20, random_state=int(rng.integers(1 << 31)))
    n = len(ids)
    return {
        "events": pd.DataFrame(
            {
                "customer_id": ids.to_numpy(),
                "ts": [end - pd.Timedelta(days=int(d)) for d in rng.integers(1, 60, n)],
                "channel": "phone",
                "event_type": "complaint",
                "amount": np.nan,
                "resolved": False,
                "event_id": [f"inbox-{i}" for i in range(n)],
                "seq": np.arange(n),
                "row_id": np.arange(n),
            }
        )
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partitioned_run_equals_single_process(client, tmp_path, seed):
    rng = np.random.default_rng(seed)
    customers = int(rng.integers(300, 900))
    partitions = int(rng.integers(2, 8))
    world = dirty(generate_world(customers, seed, start="2024-01-01", days=420), rng)
    write_partitioned(world, tmp_path / "p", partitions)
    settings = load_settings()
    as_of = pd.Timestamp("2024-09-01", tz="UTC") + pd.Timedelta(days=int(rng.integers(0, 90)))
    inbox = inbox_rows(world, rng, as_of)

    whole, _ = with_inbox(read_source(tmp_path / "p"), inbox)
    single = validate(whole)
    parts = partitions_of(str(tmp_path / "p"), inbox)

    X, checked = build_features_on(client, parts, as_of, settings)
    expected = build_features(single.tables, as_of, settings)
    assert len(expected) > 100
    pd.testing.assert_frame_equal(X, expected)
    assert checked.report == single.report
    assert checked.report["events"].quarantined >= 3
    for name, rows in single.quarantine.items():
        assert len(checked.quarantine[name]) == len(rows)

    y = build_labels_on(client, parts, as_of, settings)
    pd.testing.assert_frame_equal(
        y,
        build_labels(
            single.tables,
            as_of,
            settings.horizon_days,
            activity_event_types=settings.activity_event_types,
        ),
    )


def test_a_failing_partition_is_named(client, tmp_path):
    world = generate_world(200, 5, start="2024-01-01", days=200)
    manifest = write_partitioned(world, tmp_path / "p", 3)
    parts = partitions_of(str(tmp_path / "p"))
    manifest.path("events", 2).write_bytes(b"not parquet")
    with pytest.raises(Exception, match="partition 2: cannot read table 'events'"):
        build_features_on(client, parts, pd.Timestamp("2024-06-01", tz="UTC"), load_settings())
