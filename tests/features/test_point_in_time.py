"""Point-in-time correctness: features at `as_of` from all the data equal features from the data
cut at `as_of`, over random worlds and cutoffs; and no code reads the clock."""

import ast
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from configs import settings_from_dict
from features.build import build_features
from features.contract import CHANNELS, KNOWN_EVENT_TYPES, SURVEYS
from features.synthetic import generate_world
from features.validate import validate

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings_from_dict({"features": {"windows_days": [7, 30, 90]}})
AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
COMMENTS = [
    "great service, thank you",
    "terrible, slow delivery",
    "ok",
    "I am angry and disappointed",
    None,
]


def random_world(seed: int, n_customers: int, n_events: int, n_feedback: int, with_churn: bool):
    """A small random world whose timestamps cluster on the edges that matter: exactly at the
    cutoff, exactly one window before it, and one second either side."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n_customers)]
    edges = np.array([0, 7, 30, 90], dtype="timedelta64[D]")

    def stamps(n):
        around = (
            AS_OF.to_datetime64()
            - rng.choice(edges, n)
            + rng.choice([-1, 0, 0, 1], n).astype("timedelta64[s]")
        )
        anywhere = AS_OF.to_datetime64() + rng.integers(-200 * 86400, 100 * 86400, n).astype(
            "timedelta64[s]"
        )
        return pd.to_datetime(np.where(rng.random(n) < 0.5, around, anywhere)).tz_localize("UTC")

    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": stamps(n_customers) - pd.Timedelta(days=30),
            "segment": rng.choice(["consumer", "business", "vip"], n_customers),
            "age": rng.integers(18, 80, n_customers),
        }
    )
    types = np.array([*KNOWN_EVENT_TYPES, "email_open"])
    event_type = rng.choice(types, n_events)
    events = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n_events),
            "ts": stamps(n_events),
            "channel": rng.choice(CHANNELS, n_events),
            "event_type": event_type,
            "amount": np.where(
                event_type == "purchase",
                rng.gamma(2, 20, n_events),
                np.where(event_type == "refund", -rng.gamma(2, 5, n_events), np.nan),
            ),
            "resolved": pd.array(
                np.where(
                    np.isin(event_type, ["support_contact", "complaint"]),
                    rng.random(n_events) < 0.5,
                    None,
                ),
                dtype="boolean",
            ),
        }
    )
    # The basket family's optional columns (contract extras), so it is covered too.
    events["invoice_no"] = rng.choice([f"i{k}" for k in range(40)], n_events).astype(object)
    events["stock_code"] = rng.choice(["p1", "p2", "p3", "p4", None], n_events)
    events["quantity"] = np.where(events["event_type"] == "refund", -1.0, 1.0) * rng.integers(
        1, 5, n_events
    )
    events = events.drop_duplicates()
    survey = rng.choice(list(SURVEYS), n_feedback)
    lo = np.array([SURVEYS[s][0] for s in survey])
    hi = np.array([SURVEYS[s][1] for s in survey])
    feedback = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n_feedback),
            "ts": stamps(n_feedback),
            "survey": survey,
            "score": rng.integers(lo, hi + 1),
            "comment": rng.choice(np.array(COMMENTS, dtype=object), n_feedback),
        }
    ).drop_duplicates()
    raw = {"customers": customers, "events": events, "feedback": feedback if n_feedback else None}
    if with_churn:
        churned = rng.choice(ids, n_customers // 3, replace=False)
        raw["churn"] = pd.DataFrame({"customer_id": churned, "churn_date": stamps(len(churned))})
    return validate(raw).tables


@given(
    seed=st.integers(0, 2**32 - 1),
    n_customers=st.integers(1, 25),
    n_events=st.integers(0, 250),
    n_feedback=st.integers(0, 60),
    with_churn=st.booleans(),
    shift_seconds=st.sampled_from([0, 1, -1, 3600, 86400 * 7]),
)
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_features_from_all_data_equal_features_from_data_cut_at_as_of(
    seed, n_customers, n_events, n_feedback, with_churn, shift_seconds
):
    tables = random_world(seed, n_customers, n_events, n_feedback, with_churn)
    as_of = AS_OF + pd.Timedelta(seconds=shift_seconds)
    full = build_features(tables, as_of, SETTINGS)
    cut = build_features(tables.cut(as_of), as_of, SETTINGS)
    pd.testing.assert_frame_equal(full, cut)


@given(seed=st.integers(0, 1000), day=st.integers(60, 700))
@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_point_in_time_on_synthetic_worlds(seed, day):
    tables = validate(generate_world(150, seed, days=730)).tables
    as_of = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=day, hours=seed % 24)
    full = build_features(tables, as_of, SETTINGS)
    cut = build_features(tables.cut(as_of), as_of, SETTINGS)
    assert len(full) > 0
    pd.testing.assert_frame_equal(full, cut)


CLOCK_CALLS = {"now", "today", "utcnow", "time", "time_ns", "monotonic", "perf_counter"}
# The CLI edge may time its own progress lines, and a training run may report how long its
# stages took to MLflow; nothing that computes features, labels, models or scores may.
CLOCK_ALLOWED = {
    ROOT / "edge.py",
    ROOT / "training" / "run.py",
    # Outreach records when a receiver accepted each contact (delivered_at); no selection uses it.
    ROOT / "serving" / "outreach" / "dispatch.py",
    # The service is the loop's edge: when a row was received and a case opened or changed.
    ROOT / "serving" / "http" / "service.py",
}


def test_no_function_reads_the_clock():
    offenders = []
    for package in ("features", "configs", "store", "model", "training", "serving", "monitoring"):
        for path in (ROOT / package).rglob("*.py"):
            if path in CLOCK_ALLOWED:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name in CLOCK_CALLS:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}()")
                if isinstance(node, ast.Constant) and node.value in ("now", "today"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value!r}")
    assert not offenders, "code reads the clock:\n" + "\n".join(offenders)


def test_features_of_a_customer_subset_equal_those_from_all_customers():
    """`Tables.only` (used to label a few customers cheaply) changes nobody's features."""
    tables = validate(generate_world(300, 3, days=730)).tables
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    full = build_features(tables, as_of, SETTINGS)
    ids = full.index[::3]
    sub = build_features(tables.only(ids), as_of, SETTINGS)
    assert list(sub.index) == list(ids)
    pd.testing.assert_frame_equal(sub, full.loc[ids], check_categorical=False)
