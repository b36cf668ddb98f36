"""Quarantine: every broken row gets the right reason, counts reconcile, nothing crashes."""

import numpy as np
import pandas as pd
import pytest

from features.contract import ContractError
from features.synthetic import generate_world
from features.validate import validate


def corrupted():
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", None, "c", "c", "d", "d", "e", " "],
            "signup_date": [
                "2024-01-01",
                "2024-02-01",
                "2024-01-01",
                "2024-01-03",
                "2024-01-04",
                "2024-01-05",
                "2024-01-05",
                "yesterday",
                "2024-01-01",
            ],
            "segment": ["x", "y", "x", "z", "z", "x", "x", "x", "x"],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "ghost", None, "b", "b", "b", "b", "b", 42],
            "ts": [
                "2024-02-01 10:00",
                "2024-02-01 10:00",
                "2024-02-02",
                "2024-02-01",
                "2024-02-01",
                "not a date",
                None,
                "2024-03-01",
                "2024-03-02",
                "2024-03-03",
                "2024-03-04",
            ],
            "channel": [
                "web",
                "web",
                "APP ",
                "web",
                "web",
                "web",
                "web",
                "fax",
                "store",
                "store",
                "web",
            ],
            "event_type": [
                "purchase",
                "purchase",
                "visit",
                "visit",
                "visit",
                "visit",
                "visit",
                "visit",
                "purchase",
                "complaint",
                "visit",
            ],
            "amount": [10.0, 10.0, None, None, None, None, None, None, "lots", None, None],
            "resolved": [None, None, None, None, None, None, None, None, None, "maybe", None],
        }
    )
    feedback = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "b", "a", "a"],
            "ts": ["2024-02-01"] * 7,
            "survey": ["nps", "nps", "nps", "NPS", "csat", "poll", "ces"],
            "score": [11, -1, 10, 0, 4.5, 3, 7],
            "comment": [None, None, "good", None, None, None, "easy"],
        }
    )
    churn = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "zz"],
            "churn_date": ["2024-06-01", "2024-07-01", "2023-01-01", "2024-05-01"],
        }
    )
    return {"customers": customers, "events": events, "feedback": feedback, "churn": churn}


def test_reasons_and_counts_reconcile():
    result = validate(corrupted())
    rep = result.report
    for name, r in rep.items():
        assert r.read == r.kept + r.quarantined, name
        assert sum(r.reasons.values()) == r.quarantined
        assert len(result.quarantine[name]) == r.quarantined

    assert rep["customers"].reasons == {
        "missing customer_id": 2,  # None and a blank id
        "duplicate row": 1,
        "duplicate customer_id": 1,
        "unparseable signup_date": 1,
    }
    assert list(result.tables.customers["customer_id"]) == ["a", "b", "c", "d"]

    reasons = rep["events"].reasons
    assert reasons["duplicate row"] == 1
    assert reasons["unknown customer_id"] == 2  # "ghost" and 42
    assert reasons["missing customer_id"] == 1
    assert reasons["unparseable ts"] == 1
    assert reasons["missing ts"] == 1
    assert reasons["unparseable amount"] == 1
    assert reasons["unparseable resolved (expected true/false)"] == 1
    assert any(k.startswith("unknown channel") for k in reasons)
    assert rep["events"].kept == 2  # a's first purchase and its visit through the 'APP ' channel

    assert rep["feedback"].reasons == {
        "nps score out of range 0-10": 2,
        "csat score not a whole number": 1,
        "unknown survey type (expected one of nps, csat, ces)": 1,
    }
    assert rep["churn"].reasons == {
        "unknown customer_id": 1,
        "churn_date before signup_date": 1,
        "duplicate customer_id": 1,
    }


def test_quarantine_keeps_the_original_values_and_row_numbers():
    q = validate(corrupted()).quarantine["events"]
    row = q.loc[q["reason"] == "unparseable amount"].iloc[0]
    assert row["row_number"] == 8
    assert row["amount"] == "lots"
    assert row["customer_id"] == "b"
    assert list(q.columns) == [
        "row_number",
        "customer_id",
        "ts",
        "channel",
        "event_type",
        "amount",
        "resolved",
        "reason",
    ]


def test_clean_tables_have_contract_dtypes():
    t = validate(corrupted()).tables
    ev = t.events
    assert str(ev["ts"].dtype) == "datetime64[ns, UTC]"
    assert list(ev["customer_id"].cat.categories) == list(t.customers["customer_id"])
    assert list(ev["channel"]) == ["web", "app"]
    assert ev["resolved"].dtype == "boolean"
    fb = t.feedback
    assert list(fb["survey"]) == ["nps", "nps", "ces"]  # 'NPS' normalised to lower case
    assert fb["score"].tolist() == [10.0, 0.0, 7.0]
    assert fb["comment"].tolist() == ["good", None, "easy"]
    assert t.churn["churn_date"].iloc[0] == pd.Timestamp("2024-06-01", tz="UTC")


def test_input_frames_are_not_mutated():
    raw = corrupted()
    before = {k: v.copy() for k, v in raw.items()}
    validate(raw)
    for k in raw:
        pd.testing.assert_frame_equal(raw[k], before[k])


def test_clean_tables_kept_without_a_copy_do_not_share_edits_with_the_input():
    # Without a bad row (and with a RangeIndex) validation keeps its clean frame as it is;
    # changing the validated tables must still leave the caller's frames alone.
    raw = {k: v for k, v in generate_world(60, seed=3).items() if v is not None}
    before = {k: v.copy() for k, v in raw.items()}
    result = validate(raw)
    assert all(len(q) == 0 for q in result.quarantine.values())
    events = result.tables.events
    events.loc[events.index[:5], "amount"] = -1.0
    events["ts"] = events["ts"] + pd.Timedelta(days=1)
    result.tables.customers.loc[0, "segment"] = "changed"
    for k in raw:
        pd.testing.assert_frame_equal(raw[k], before[k])
    # A frame with another index validates to the same tables.
    shuffled = {k: v.set_axis(np.arange(len(v))[::-1] * 3) for k, v in before.items()}
    again = validate(shuffled).tables
    expected = validate(before).tables
    for name in ("customers", "events", "feedback", "churn"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(expected, name))


def test_ids_from_floats_and_timezones_are_normalised():
    customers = pd.DataFrame(
        {"customer_id": [12346.0, 7.0], "signup_date": pd.to_datetime(["2024-01-01", "2024-01-02"])}
    )
    events = pd.DataFrame(
        {
            "customer_id": ["12346", "7"],
            "ts": ["2024-02-01T12:00:00+02:00", "2024-02-01 10:00:00"],
            "channel": ["web", "web"],
            "event_type": ["purchase", "purchase"],
        }
    )
    t = validate({"customers": customers, "events": events}).tables
    assert list(t.customers["customer_id"]) == ["12346", "7"]
    assert t.customers["signup_date"].dt.tz is not None
    assert list(t.events["ts"]) == [pd.Timestamp("2024-02-01 10:00", tz="UTC")] * 2
    assert np.isnan(t.events["amount"]).all()
    assert t.feedback is None and t.churn is None


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("events", "ts"),
        ("customers", "signup_date"),
        ("feedback", "score"),
        ("churn", "churn_date"),
    ],
)
def test_missing_required_column_names_table_and_column(table, column):
    raw = corrupted()
    raw[table] = raw[table].drop(columns=[column])
    with pytest.raises(ContractError) as info:
        validate(raw)
    assert f"'{table}'" in str(info.value)
    assert column in str(info.value)


def test_missing_required_table():
    raw = corrupted()
    raw["events"] = None
    with pytest.raises(ContractError, match="required table 'events' is missing"):
        validate(raw)


def test_a_bad_first_timestamp_is_rejected_alone_and_the_format_still_comes_from_the_rest():
    import warnings

    from features.validate import _timestamps

    s = pd.Series(["not a time", "2026-12-02T05:00:00Z", None, "2026-12-02T06:00:00+01:00"])
    with warnings.catch_warnings():
        # pandas warns "Could not infer format" when it falls back to parsing value by value
        warnings.simplefilter("error")
        out, bad = _timestamps(s)
    assert bad.tolist() == [True, False, False, False]
    assert pd.isna(out.iloc[0]) and pd.isna(out.iloc[2])
    assert out.iloc[1] == out.iloc[3] == pd.Timestamp("2026-12-02 05:00", tz="UTC")
    # another format after the guessed one is parsed on its own, not rejected
    out, bad = _timestamps(pd.Series(["2026-12-02T05:00:00Z", "12/03/2026 08:26"]))
    assert not bad.any() and out.iloc[1] == pd.Timestamp("2026-12-03 08:26", tz="UTC")
