"""Outreach policy and outbox on hand-made scored lists: thresholds, capacity, exclusions,
cooldown across runs, the control group, idempotency keys, reruns and the CSV file drop."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from configs import settings_from_dict
from serving.outreach import cli as outreach_cli
from serving.outreach.dispatch import FILE_COLUMNS
from serving.outreach.outbox import Outbox, read_outbox
from serving.outreach.policy import (
    CONTACT,
    CONTROL,
    OutreachError,
    campaign_window,
    control_draw,
    idempotency_key,
    select_contacts,
)
from serving.outreach.run import run_outreach

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


def settings(**outreach):
    # The hand-made frames below are built around these thresholds, not whatever the defaults are.
    base = {"min_churn_probability": 0.3, "min_clv": 100.0}
    return settings_from_dict({"outreach": {**base, **outreach}})


def scored(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A ranked scored list like serving.batch.score_population's."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "segment": rng.choice(["consumer", "business", "vip"], n),
            "churn_probability": rng.random(n),
            "clv": rng.gamma(2.0, 150.0, n),
        }
    )
    frame["clv_low"] = frame["clv"] * 0.5
    frame["clv_high"] = frame["clv"] * 1.5
    frame["value_at_risk"] = frame["churn_probability"] * frame["clv"]
    frame["tier"] = np.where(frame["churn_probability"] >= 0.3, "high", "low")
    frame["reason_1"] = "no purchase in 60 days"
    frame["reason_2"] = "detractor NPS"
    frame["reason_3"] = None
    frame["churn_model_version"] = "3"
    frame["clv_model_version"] = "2"
    return frame.sort_values("value_at_risk", ascending=False, ignore_index=True)


def hand_made() -> pd.DataFrame:
    rows = [
        # customer, segment, risk, clv
        ("a", "consumer", 0.90, 500.0),  # in
        ("b", "consumer", 0.29, 900.0),  # risk just below 0.3
        ("c", "consumer", 0.30, 100.0),  # both exactly at the minimum: in
        ("d", "staff", 0.80, 800.0),  # excluded segment
        ("e", "consumer", 0.70, 99.99),  # value just below 100
        ("f", "vip", 0.60, 300.0),  # excluded by id
        ("g", "vip", 0.50, 400.0),  # in
        ("h", "consumer", np.nan, 400.0),  # no score: never selected
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "segment", "churn_probability", "clv"])
    return frame.assign(value_at_risk=frame["churn_probability"] * frame["clv"])


def test_thresholds_and_exclusions_pick_exactly_the_qualifying_customers():
    policy = settings(
        control_share=0.0, exclude_segments=["staff"], exclude_customers=["f"]
    ).outreach
    sel = select_contacts(hand_made(), AS_OF, policy)
    assert sel.rows["customer_id"].tolist() == ["a", "g", "c"]  # by value at risk
    assert sel.rows["rank"].tolist() == [1, 2, 3]
    assert set(sel.rows["group"]) == {CONTACT}
    assert {k: sel.counts[k] for k in sel.counts if k != "candidates"} == {
        "below_min_churn_probability": 2,  # b and h
        "below_min_clv": 1,
        "excluded_segment": 1,
        "excluded_customer": 1,
        "in_cooldown": 0,
        "already_in_window": 0,
        "eligible": 3,
        "selected": 3,
        "contact": 3,
        "control": 0,
        "beyond_capacity": 0,
    }


def test_capacity_keeps_the_highest_value_at_risk_and_counts_contacts_only():
    frame = scored(400)
    policy = settings(control_share=0.0, capacity_per_run=25).outreach
    sel = select_contacts(frame.sample(frac=1.0, random_state=1), AS_OF, policy)  # any order in
    eligible = frame[(frame["churn_probability"] >= 0.3) & (frame["clv"] >= 100.0)]
    assert sel.rows["customer_id"].tolist() == eligible["customer_id"].head(25).tolist()

    with_control = select_contacts(frame, AS_OF, settings(capacity_per_run=25).outreach)
    rows = with_control.rows
    assert (rows["group"] == CONTACT).sum() == 25  # capacity is the CX team's contacts
    assert rows["group"].iloc[-1] == CONTACT  # the walk stops at the 25th contact
    # The selection is a prefix of the eligible ranking, controls drawn among the same customers.
    assert rows["customer_id"].tolist() == eligible["customer_id"].head(len(rows)).tolist()


def test_control_share_is_about_ten_percent_and_stable_across_reruns():
    frame = scored(20_000, seed=3)
    policy = settings(capacity_per_run=20_000).outreach
    first = select_contacts(frame, AS_OF, policy)
    share = (first.rows["group"] == CONTROL).mean()
    assert len(first.rows) > 5000
    assert 0.085 < share < 0.115
    again = select_contacts(frame.iloc[::-1], AS_OF + pd.Timedelta(days=1), policy)
    pd.testing.assert_frame_equal(first.rows, again.rows)  # same window: same draws and groups
    # Recorded: the draw that decided it is kept with every row.
    assert ((first.rows["control_draw"] < 0.1) == (first.rows["group"] == CONTROL)).all()
    assert (first.rows["control_draw"] == [
        control_draw("retention", first.window.label, c) for c in first.rows["customer_id"]
    ]).all()  # fmt: skip


def test_idempotency_key_is_stable_within_a_campaign_window_and_new_in_the_next():
    w1 = campaign_window(AS_OF, 30)
    assert w1.start <= AS_OF < w1.start + pd.Timedelta(days=30)
    assert campaign_window(w1.start + pd.Timedelta(days=29, hours=23), 30) == w1
    w2 = campaign_window(w1.start + pd.Timedelta(days=30), 30)
    assert w2.start == w1.start + pd.Timedelta(days=30)
    key = idempotency_key("retention", w1.label, "c1")
    assert key == idempotency_key("retention", w1.label, "c1")
    assert len(key) == 32
    assert key != idempotency_key("retention", w2.label, "c1")
    assert key != idempotency_key("winback", w1.label, "c1")
    assert key != idempotency_key("retention", w1.label, "c2")
    # Two selections within one window give the same keys.
    frame, policy = scored(200), settings().outreach
    a = select_contacts(frame, w1.start, policy).rows.set_index("customer_id")["idempotency_key"]
    b = select_contacts(frame, w1.start + pd.Timedelta(days=20), policy).rows
    assert (b.set_index("customer_id")["idempotency_key"] == a.reindex(b["customer_id"])).all()


def test_cooldown_holds_across_runs_for_contacts_and_controls(tmp_path):
    frame = scored(3000)
    cfg = settings(capacity_per_run=40, cooldown_days=30)
    runs = {}
    for day in (0, 10, 30, 45):
        as_of = AS_OF + pd.Timedelta(days=day)
        runs[day] = run_outreach(frame, as_of, cfg, data_dir=tmp_path).selection
    ids = {day: set(rows["customer_id"]) for day, rows in runs.items()}
    assert not ids[0] & ids[10]  # 10 days apart: in cooldown, controls included
    assert not ids[10] & ids[30]  # 20 days apart
    assert ids[0] & ids[30]  # exactly 30 days later the top customers qualify again
    assert not ids[30] & ids[45]
    # A customer selected again gets a new idempotency key (a new window).
    history = read_outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}")
    assert history["idempotency_key"].is_unique
    assert runs[0]["window"].iloc[0] != runs[30]["window"].iloc[0]
    # Running an earlier as_of later still respects cooldown around the later runs.
    backfill = run_outreach(frame, AS_OF + pd.Timedelta(days=5), cfg, data_dir=tmp_path).selection
    assert not set(backfill["customer_id"]) & (ids[0] | ids[10])


def test_rerun_of_the_same_as_of_creates_no_new_rows(tmp_path):
    frame, cfg = scored(800), settings(capacity_per_run=30)
    first = run_outreach(frame, AS_OF, cfg, data_dir=tmp_path)
    assert first.new_run and first.counts["contact"] == 30
    more = pd.concat(
        [scored(800, seed=9).assign(customer_id=lambda f: "n" + f["customer_id"]), frame]
    )
    again = run_outreach(more, AS_OF, cfg, data_dir=tmp_path)  # even with a different list
    assert not again.new_run
    history = read_outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}")
    assert len(history) == len(first.selection)
    assert history["customer_id"].tolist() == first.selection["customer_id"].tolist()
    assert (history.loc[history["group"] == CONTACT, "status"] == "sent").all()
    assert (history.loc[history["group"] == CONTROL, "status"] == CONTROL).all()


def test_file_drop_holds_the_run_contacts_and_never_the_controls(tmp_path):
    frame, cfg = scored(800), settings(capacity_per_run=50, control_share=0.2)
    report = run_outreach(frame, AS_OF, cfg, data_dir=tmp_path)
    assert report.channel == "file" and report.delivered == 50 and report.pending == 0
    [path] = report.files
    assert path == tmp_path / "outreach" / "drop" / "retention_2026-01-01T00_00_00Z.csv"
    drop = pd.read_csv(path, dtype={"customer_id": str, "churn_model_version": str})
    assert list(drop.columns) == list(FILE_COLUMNS)
    contacts = report.selection[report.selection["group"] == CONTACT]
    controls = report.selection[report.selection["group"] == CONTROL]
    assert len(controls) > 0
    assert drop["customer_id"].tolist() == contacts["customer_id"].tolist()
    assert not set(drop["customer_id"]) & set(controls["customer_id"])
    assert drop["idempotency_key"].tolist() == contacts["idempotency_key"].tolist()
    assert (drop["as_of"] == "2026-01-01T00:00:00Z").all()
    assert (drop["run_id"] == "retention@2026-01-01T00:00:00Z").all()
    source = frame.set_index("customer_id").loc[drop["customer_id"]]
    np.testing.assert_allclose(drop["value_at_risk"], source["value_at_risk"])
    np.testing.assert_allclose(drop["clv_low"], source["clv_low"])
    assert (drop["reason_1"] == "no purchase in 60 days").all()
    assert drop["reason_3"].isna().all()
    assert (drop["churn_model_version"] == "3").all()
    # A rerun leaves the file as it was and writes no new one.
    before = path.read_bytes()
    run_outreach(frame, AS_OF, cfg, data_dir=tmp_path)
    assert path.read_bytes() == before
    # (Beside it only the hidden lock file writers take turns on; no temporary file is left.)
    assert [p.name for p in path.parent.iterdir() if p.name != ".outreach-drop.lock"] == [path.name]


def test_outbox_records_everything_monitoring_needs(tmp_path):
    report = run_outreach(scored(500), AS_OF, settings(capacity_per_run=20), data_dir=tmp_path)
    history = read_outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}")
    needed = {
        "run_id", "as_of", "campaign", "customer_id", "group", "churn_probability", "clv",
        "value_at_risk", "tier", "reason_1", "reason_2", "reason_3", "churn_model_version",
        "clv_model_version", "status", "attempts", "last_error", "delivered_at",
        "idempotency_key", "control_draw", "window",
    }  # fmt: skip
    assert needed <= set(history.columns)
    assert str(history["as_of"].dt.tz) == "UTC"
    assert (history["as_of"] == AS_OF).all()
    sent = history[history["status"] == "sent"]
    assert sent["delivered_at"].notna().all()
    assert history.loc[history["group"] == CONTROL, "delivered_at"].isna().all()
    with Outbox(f"sqlite:///{tmp_path / 'store' / 'retain.db'}", create=False) as box:
        summary = box.run_summary()
    assert summary.iloc[0][["selected", "contact", "pending", "sent", "failed"]].tolist() == [
        len(report.selection), 20, 0, 20, 0
    ]  # fmt: skip


def test_a_run_is_recorded_whole_or_not_at_all(tmp_path):
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    policy = settings(capacity_per_run=10).outreach
    selection = select_contacts(scored(300), AS_OF, policy)
    # Simulate a concurrent writer that took one of the keys: the insert must roll back whole.
    clash = selection.rows.iloc[[5]].assign(group=CONTACT)
    other = select_contacts(scored(300), AS_OF - pd.Timedelta(days=400), policy)
    other.rows = clash
    with Outbox(url) as box:
        assert box.record_run(other, policy)
        with pytest.raises(OutreachError, match="idempotency key is already recorded"):
            box.record_run(selection, policy)
        assert box.run_record(selection.run_id) is None
        assert len(box.history()) == 1


def test_selected_customers_without_reasons_get_them_from_explain(tmp_path):
    frame = scored(500)
    frame.loc[10:, ["reason_1", "reason_2"]] = ""  # batch scoring explains the top only
    asked: list[str] = []

    def explain(ids):
        asked.extend(ids)
        return pd.DataFrame(
            {"reason_1": "late deliveries", "reason_2": "", "reason_3": ""}, index=pd.Index(ids)
        )

    report = run_outreach(
        frame, AS_OF, settings(capacity_per_run=40), data_dir=tmp_path, explain=explain
    )
    rows = report.selection.set_index("customer_id")
    top = set(frame["customer_id"].head(10))
    assert set(asked) == set(rows.index) - top
    assert (rows.loc[asked, "reason_1"] == "late deliveries").all()
    assert (rows.loc[list(top & set(rows.index)), "reason_1"] == "no purchase in 60 days").all()


def test_dry_run_writes_nothing(tmp_path):
    report = run_outreach(scored(300), AS_OF, settings(), data_dir=tmp_path, dry_run=True)
    assert report.dry_run and report.counts["selected"] > 0
    assert not (tmp_path / "outreach").exists()


def test_bad_scored_lists_are_refused_with_the_reason():
    policy = settings().outreach
    with pytest.raises(OutreachError, match=r"missing column\(s\) \['value_at_risk'\]"):
        select_contacts(hand_made().drop(columns="value_at_risk"), AS_OF, policy)
    with pytest.raises(OutreachError, match="unique"):
        select_contacts(pd.concat([hand_made(), hand_made()]), AS_OF, policy)
    no_segment = settings(exclude_segments=["vip"]).outreach
    with pytest.raises(OutreachError, match="segment"):
        select_contacts(hand_made().drop(columns="segment"), AS_OF, no_segment)


def test_cli_run_and_status(tmp_path, monkeypatch):
    from serving.cli import app

    frame = scored(3000)
    monkeypatch.setattr(
        outreach_cli, "_score", lambda data, as_of, settings, progress: (frame, None)
    )
    monkeypatch.delenv("RETAIN_OUTREACH_WEBHOOK_URL", raising=False)
    runner = CliRunner()
    data = str(tmp_path / "data")
    result = runner.invoke(app, ["outreach", "run", "--data", data, "--as-of", "2026-01-01"])
    assert result.exit_code == 0, result.output
    assert "500 contact" in result.output and "dispatch via file: 500 delivered" in result.output
    result = runner.invoke(app, ["outreach", "status", "--data", data])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("retention@"))
    selected, contact, control, pending, sent, failed = map(int, line.split()[3:])
    assert (contact, pending, sent, failed) == (500, 0, 500, 0)
    assert selected == contact + control and control > 0

    missing = runner.invoke(app, ["outreach", "status", "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no outbox" in missing.output
    bad = runner.invoke(app, ["outreach", "run", "--data", data, "--as-of", "someday"])
    assert bad.exit_code == 2
    monkeypatch.setenv("RETAIN_OUTREACH_WEBHOOK_URL", "ftp://example.invalid/hook")
    wrong = runner.invoke(app, ["outreach", "run", "--data", data, "--as-of", "2026-02-01"])
    assert wrong.exit_code == 2 and "http:// or https://" in wrong.output
    with Outbox(f"sqlite:///{tmp_path / 'data' / 'store' / 'retain.db'}") as box:
        assert len(box.run_summary()) == 1  # refused before anything was recorded
