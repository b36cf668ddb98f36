"""The synthetic world: determinism, the data contract, the timeline rules, the behaviour the
churn hazard promises (signals precede churn), comment tone and drift."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from features import synthetic
from features.contract import CHANNELS, NEGATIVE_AT_OR_BELOW, SURVEYS, to_utc
from features.synthetic import (
    EVENT_TYPES,
    comment_bank,
    drift_start_day,
    generate_partitioned,
    generate_world,
    write_world,
)

START = to_utc("2024-01-01")
DAYS = 730
END = START + pd.Timedelta(days=DAYS)


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate_world(2000, seed=11)


@pytest.fixture(scope="module")
def big_world() -> dict[str, pd.DataFrame]:
    # Large enough that rare experiences (unresolved complaints) have a few hundred customers.
    return generate_world(8000, seed=5)


def _population_churn(world: dict[str, pd.DataFrame], flag, horizon_days: int = 60):
    """Pool monthly-spaced cutoffs: for each active customer, whether `flag` (ids seen in the
    90 days before the cutoff) holds, and whether they churn in the next `horizon_days`."""
    customers, churn = world["customers"], world["churn"]
    churn_at = churn.set_index("customer_id")["churn_date"]
    churn_date = customers["customer_id"].map(churn_at)
    rows = []
    for day in range(120, DAYS - horizon_days, 30):
        as_of = START + pd.Timedelta(days=day)
        in_pop = (customers["signup_date"] < as_of) & ~(churn_date < as_of)
        ids = customers.loc[in_pop, "customer_id"]
        later = churn_date[in_pop]
        churned = (later >= as_of) & (later < as_of + pd.Timedelta(days=horizon_days))
        flagged = ids.isin(flag(as_of - pd.Timedelta(days=90), as_of))
        rows.append(pd.DataFrame({"flag": flagged.to_numpy(), "churned": churned.to_numpy()}))
    return pd.concat(rows).groupby("flag")["churned"].agg(["mean", "size"])


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path):
    first = write_world(generate_world(300, seed=3), tmp_path / "a")
    second = write_world(generate_world(300, seed=3), tmp_path / "b")
    other = write_world(generate_world(300, seed=4), tmp_path / "c")
    assert set(first) == {"customers", "events", "feedback", "churn"}
    for name, path in first.items():
        assert path.name == f"{name}.parquet"
        assert path.read_bytes() == second[name].read_bytes(), name
    assert first["events"].read_bytes() != other["events"].read_bytes()
    back = pd.read_parquet(first["events"])
    assert list(back.columns) == [
        "customer_id",
        "ts",
        "channel",
        "event_type",
        "amount",
        "resolved",
    ]
    assert str(back["ts"].dtype) == "datetime64[ns, UTC]"


def test_tables_meet_the_contract(world):
    customers, events, feedback, churn = (
        world[k] for k in ("customers", "events", "feedback", "churn")
    )
    assert list(customers.columns) == [
        "customer_id",
        "signup_date",
        "segment",
        "plan",
        "region",
        "acquisition_channel",
        "age",
    ]
    assert customers["customer_id"].is_unique
    assert customers["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert set(customers["segment"]) == {"consumer", "small_business", "enterprise"}
    assert set(customers["plan"]) == {"basic", "standard", "premium"}
    assert customers["region"].nunique() == 5
    assert customers["age"].between(18, 85).all()
    for frame, col in (
        (customers, "signup_date"),
        (events, "ts"),
        (feedback, "ts"),
        (churn, "churn_date"),
    ):
        assert str(frame[col].dtype) == "datetime64[ns, UTC]", col

    assert set(events["channel"]) <= set(CHANNELS)
    assert set(events["event_type"]) == set(EVENT_TYPES)
    by_type = events.groupby("event_type")["channel"].unique().map(set)
    assert by_type["visit"] <= {"web", "app"}
    assert by_type["support_contact"] <= {"phone", "chat", "email"}
    assert by_type["email_open"] == {"email"}
    assert by_type["sms_click"] == {"sms"}
    assert by_type["social_mention"] == {"social"}
    assert events["ts"].is_monotonic_increasing

    amount = events["amount"]
    is_purchase = events["event_type"] == "purchase"
    is_refund = events["event_type"] == "refund"
    assert (amount[is_purchase] > 0).all()
    assert (amount[is_refund] < 0).all()
    assert amount[~(is_purchase | is_refund)].isna().all()
    assert str(events["resolved"].dtype) == "boolean"
    has_outcome = events["event_type"].isin(["support_contact", "complaint"])
    assert events.loc[has_outcome, "resolved"].notna().all()
    assert events.loc[~has_outcome, "resolved"].isna().all()

    assert set(feedback["survey"]) == set(SURVEYS)
    for survey, (lo, hi) in SURVEYS.items():
        scores = feedback.loc[feedback["survey"] == survey, "score"]
        assert scores.between(lo, hi).all(), survey
    assert feedback["comment"].map(lambda c: c is None or isinstance(c, str)).all()

    assert churn["customer_id"].is_unique
    assert set(churn["customer_id"]) <= set(customers["customer_id"])


def test_nothing_happens_outside_a_customers_life_or_the_window(world):
    customers, churn = world["customers"], world["churn"]
    signup = customers.set_index("customer_id")["signup_date"]
    churn_at = churn.set_index("customer_id")["churn_date"]
    for name in ("events", "feedback"):
        frame = world[name]
        assert (frame["ts"] >= START).all() and (frame["ts"] < END).all(), name
        assert (frame["ts"] >= frame["customer_id"].map(signup)).all(), name
        gone = frame["customer_id"].map(churn_at)
        assert not (frame["ts"] >= gone).any(), name
    assert (churn["churn_date"] > churn["customer_id"].map(signup)).all()
    assert (churn["churn_date"] >= START).all() and (churn["churn_date"] < END).all()
    existing = (customers["signup_date"] < START).mean()
    assert 0.25 < existing < 0.35
    assert customers["signup_date"].max() < END - pd.Timedelta(days=60)


def test_volumes_and_churn_are_in_a_plausible_band(big_world):
    n = len(big_world["customers"])
    assert 8 < len(big_world["events"]) / n < 13
    assert 0.7 < len(big_world["feedback"]) / n < 1.3
    assert 0.30 < len(big_world["churn"]) / n < 0.45
    assert 0.3 < big_world["feedback"]["comment"].notna().mean() < 0.5
    monthly = _population_churn(big_world, lambda lo, hi: set(), horizon_days=30)
    assert 0.02 < monthly.loc[False, "mean"] < 0.035


def test_unresolved_complaints_precede_churn(big_world):
    events = big_world["events"]
    unresolved = events.loc[(events["event_type"] == "complaint") & events["resolved"].eq(False)]

    def flag(lo, hi):
        return set(
            unresolved.loc[(unresolved["ts"] >= lo) & (unresolved["ts"] < hi), "customer_id"]
        )

    rates = _population_churn(big_world, flag)
    assert rates.loc[True, "size"] > 300
    assert rates.loc[True, "mean"] > 1.6 * rates.loc[False, "mean"]


def test_detractors_churn_more_and_promoters_less(big_world):
    nps = big_world["feedback"].loc[big_world["feedback"]["survey"] == "nps"]

    def scored(low, high):
        def flag(lo, hi):
            window = nps.loc[(nps["ts"] >= lo) & (nps["ts"] < hi)]
            return set(window.loc[window["score"].between(low, high), "customer_id"])

        return _population_churn(big_world, flag)

    detractors, promoters = scored(0, 6), scored(9, 10)
    assert detractors.loc[True, "mean"] > 1.4 * detractors.loc[False, "mean"]
    assert promoters.loc[True, "mean"] < 0.8 * promoters.loc[False, "mean"]


def test_comment_tone_follows_the_score(world):
    feedback = world["feedback"].dropna(subset=["comment"])
    assert feedback["comment"].nunique() > 300
    negative_cut = feedback["survey"].map(NEGATIVE_AT_OR_BELOW)
    top = feedback["survey"].map({k: hi for k, (_, hi) in SURVEYS.items()})
    analyzer = SentimentIntensityAnalyzer()
    compound = feedback["comment"].map(lambda text: analyzer.polarity_scores(text)["compound"])
    assert (compound[feedback["score"] <= negative_cut] < -0.05).all()
    assert (compound[feedback["score"] == top] > 0.05).all()


def test_every_bank_text_reads_as_its_tone():
    bank = comment_bank()
    analyzer = SentimentIntensityAnalyzer()
    cell = len(bank) // 3
    # Every 7th text covers all topics, phrases and closers while keeping the test fast.
    for tone, sign in ((0, -1), (2, 1)):
        texts = bank[tone * cell : (tone + 1) * cell : 7]
        scores = np.array([analyzer.polarity_scores(t)["compound"] for t in texts])
        assert (sign * scores > 0.05).all(), tone


def test_drift_changes_only_the_last_months():
    plain = generate_world(3000, seed=9)
    drifted = generate_world(3000, seed=9, drift=True)
    pd.testing.assert_frame_equal(plain["customers"], drifted["customers"])
    boundary = START + pd.Timedelta(days=drift_start_day(DAYS))
    assert boundary >= START + pd.Timedelta(days=365)
    for name, col in (("events", "ts"), ("feedback", "ts"), ("churn", "churn_date")):
        before = [
            w[name].loc[w[name][col] < boundary].reset_index(drop=True) for w in (plain, drifted)
        ]
        pd.testing.assert_frame_equal(*before, obj=name)

    def late(w):
        ev = w["events"].loc[w["events"]["ts"] >= boundary]
        fb = w["feedback"].loc[w["feedback"]["ts"] >= boundary]
        types = ev["event_type"].value_counts()
        purchases = ev.loc[ev["event_type"] == "purchase", "amount"]
        return {
            "app_share": (ev["channel"] == "app").mean(),
            "delivery_per_purchase": types["delivery_issue"] / types["purchase"],
            "basket": purchases.mean(),
            "nps": fb.loc[fb["survey"] == "nps", "score"].mean(),
        }

    base, moved = late(plain), late(drifted)
    assert moved["app_share"] > base["app_share"] + 0.1
    assert moved["delivery_per_purchase"] > 2 * base["delivery_per_purchase"]
    assert moved["basket"] > 1.15 * base["basket"]
    assert moved["nps"] < base["nps"] - 0.5


def test_progress_reports_each_stage_and_period():
    messages: list[str] = []
    generate_world(100, seed=1, days=120, progress=messages.append)
    assert messages[0].startswith("customers")
    assert sum(m.startswith("period ") for m in messages) == 4
    assert messages[-1].startswith("churn")


def test_other_windows_and_bad_arguments():
    w = generate_world(200, seed=2, start="2022-06-01", days=200)
    start = to_utc("2022-06-01")
    assert w["events"]["ts"].min() >= start
    assert w["events"]["ts"].max() < start + pd.Timedelta(days=200)
    with pytest.raises(ValueError, match="n_customers"):
        generate_world(0, seed=1)
    with pytest.raises(ValueError, match="days"):
        generate_world(10, seed=1, days=30)


def test_module_never_reads_the_clock():
    source = inspect.getsource(synthetic)
    assert not re.search(r"\b(now|today|utcnow)\(|time\.time\(|perf_counter", source)


def test_a_partitioned_world_is_written_in_chunks_with_distinct_ids(tmp_path):
    from features.partitioned import read_partitioned

    said = []
    manifest = generate_partitioned(700, 4, tmp_path / "w", 3, chunk=300, progress=said.append)
    assert [m.split(":")[0] for m in said] == ["chunk 1/3", "chunk 2/3", "chunk 3/3"]
    whole = read_partitioned(tmp_path / "w")
    ids = whole["customers"]["customer_id"].astype(str)
    assert ids.is_unique and sorted(ids) == [f"C{i:07d}" for i in range(1, 701)]
    for name in ("events", "feedback", "churn"):
        assert set(whole[name]["customer_id"].astype(str)) <= set(ids)
        assert sum(manifest.rows[name]) == len(whole[name])
    # Each chunk is the world its own stream gives: the last one is customers 601-700.
    last = generate_world(100, (4, 2), first_id=601, id_width=7)
    got = whole["events"][whole["events"]["customer_id"].astype(str) >= "C0000601"]
    key = ["customer_id", "ts", "event_type", "amount"]
    expected = last["events"].sort_values(key)[key].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got.astype({"customer_id": str, "event_type": str})
        .sort_values(key)[key]
        .reset_index(drop=True),
        expected,
    )
    # Same arguments, same bytes.
    again = generate_partitioned(700, 4, tmp_path / "again", 3, chunk=300)
    for name in manifest.tables:
        for i in range(3):
            assert manifest.path(name, i).read_bytes() == again.path(name, i).read_bytes()
    with pytest.raises(ValueError, match="chunk"):
        generate_partitioned(10, 4, tmp_path / "bad", 2, chunk=0)
