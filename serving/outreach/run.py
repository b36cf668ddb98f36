"""One outreach run end to end: select, record in the outbox (exactly once), deliver what is
pending, report. The use case `retain outreach run` calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from configs import OutreachSettings, Settings
from serving.loop.cases import open_retention_cases
from serving.outreach.outbox import Outbox, file_drop_dir_for, open_outbox, redact
from serving.outreach.policy import (
    NoOutboxError,
    Progress,
    Selection,
    campaign_window,
    fill_reasons,
    run_id_for,
    select_contacts,
    utc,
)
from store import Store, url_for


@dataclass
class OutreachReport:
    run_id: str
    campaign: str
    as_of: pd.Timestamp
    window: str
    outbox: str  # URL with any password hidden
    new_run: bool  # False: this as_of was already recorded; only pending contacts were dispatched
    dry_run: bool
    counts: dict[str, int]
    selection: pd.DataFrame
    channel: str | None = None  # webhook or file; None when nothing was dispatched
    delivered: int = 0
    failed: int = 0
    pending: int = 0  # contacts still pending in the whole outbox after this run
    requeued: int = 0
    stopped: str | None = None  # why dispatch stopped early (receiver unavailable)
    files: list[Path] = field(default_factory=list)
    cases: dict[str, int] = field(default_factory=dict)  # retention cases opened for contacts

    def summary(self) -> str:
        c = self.counts
        verb = "would select" if self.dry_run else ("selected" if self.new_run else "already had")
        lines = [
            f"outreach run {self.run_id} (window {self.window}, outbox {self.outbox})",
            f"  candidates {c.get('candidates', 0):,}: below min churn probability "
            f"{c.get('below_min_churn_probability', 0):,}, below min CLV {c.get('below_min_clv', 0):,}, "
            f"excluded segment {c.get('excluded_segment', 0):,}, excluded customer "
            f"{c.get('excluded_customer', 0):,}, in cooldown {c.get('in_cooldown', 0):,}, "
            f"already in window {c.get('already_in_window', 0):,}, beyond capacity "
            f"{c.get('beyond_capacity', 0):,}",
            f"  {verb} {c.get('selected', 0):,}: {c.get('contact', 0):,} contact, "
            f"{c.get('control', 0):,} control (held out, never contacted)",
        ]
        if self.dry_run:
            return "\n".join(lines)
        if self.requeued:
            lines.append(f"  requeued {self.requeued:,} failed contacts")
        if self.channel:
            lines.append(
                f"  dispatch via {self.channel}: {self.delivered:,} delivered, "
                f"{self.failed:,} failed, {self.pending:,} still pending"
            )
        for path in self.files:
            lines.append(f"  file drop: {path}")
        if self.cases:
            lines.append(
                f"  case queue: {self.cases.get('opened', 0):,} retention cases opened, "
                f"{self.cases.get('added', 0):,} joined to an open one"
            )
        if self.stopped:
            lines.append(f"  dispatch stopped early: {self.stopped}")
        return "\n".join(lines)


def run_outreach(
    scored: pd.DataFrame,
    as_of: pd.Timestamp | str,
    settings: Settings,
    *,
    data_dir: str | Path | None = None,
    store: Store | str | None = None,
    webhook_url: str | None = None,
    file_drop_dir: str | Path | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    explain: Callable[[list[str]], pd.DataFrame] | None = None,
    progress: Progress | None = None,
    open_cases: bool = False,
    now: pd.Timestamp | None = None,
    **dispatch_options: Any,
) -> OutreachReport:
    """Select, record and dispatch one outreach run at `as_of`, then deliver whatever is still
    pending from earlier runs. The same `as_of` again records nothing new and only dispatches.

    `webhook_url` None means `settings.outreach.webhook_url` (the CLI resolves the environment
    variable); an empty URL means the CSV file drop. `explain(customer_ids)` returns reason_1..3
    indexed by customer_id, for selected customers whose reasons are empty (batch scoring writes
    reasons for the top of the whole list only). `dispatch_options` go to the dispatcher (tests
    inject `client`, `sleep`, `rng`). The outbox is in `store` (a Store or its URL; default the
    data folder's store, `store.url`). With `open_cases`, every contact also becomes a
    retention case in the store's queue, opened at `now` (exactly once per contact)."""
    say = progress or (lambda _message: None)
    policy = settings.outreach
    as_of = utc(as_of)
    if store is None:
        store = url_for(settings.store.url, data_dir, {})
    if dry_run:
        return _dry_run(scored, as_of, policy, store, data_dir)
    # Built first, so a bad webhook URL stops the run before anything is recorded.
    hook = policy.webhook_url if webhook_url is None else webhook_url
    drop = Path(file_drop_dir) if file_drop_dir else file_drop_dir_for(settings, data_dir)
    dispatcher = make_dispatcher(policy, hook, drop, **dispatch_options)

    with open_outbox(store, data_dir) as box:
        report = _record(box, scored, as_of, policy, explain, say)
        if open_cases:
            if now is None:
                raise ValueError("opening retention cases needs `now`")
            contacts = box.history(report.run_id)
            contacts = contacts[contacts["group"] == "contact"]
            report.cases = open_retention_cases(box.store, contacts, settings.loop, now)
        if retry_failed:
            report.requeued = box.requeue_failed()
        result = dispatcher.dispatch(box, progress=say)
        report.channel = result.channel
        report.delivered, report.failed = result.delivered, result.failed
        report.stopped, report.files = result.stopped, result.files
        report.pending = box.count_pending()
        report.selection = box.history(report.run_id)
    return report


def make_dispatcher(policy: OutreachSettings, webhook_url: str, drop_dir: Path, **options: Any):
    """The webhook when a URL is given, else the CSV file drop: one channel per dispatch pass."""
    from serving.outreach.dispatch import FileDropDispatcher, WebhookDispatcher

    if webhook_url:
        return WebhookDispatcher.from_settings(webhook_url, policy, **options)
    return FileDropDispatcher(drop_dir)


def _report(selection: Selection, url: str, *, new_run: bool, dry_run: bool) -> OutreachReport:
    return OutreachReport(
        run_id=selection.run_id,
        campaign=selection.campaign,
        as_of=selection.as_of,
        window=selection.window.label,
        outbox=redact(url),
        new_run=new_run,
        dry_run=dry_run,
        counts=selection.counts,
        selection=selection.rows,
    )


def _dry_run(
    scored: pd.DataFrame,
    as_of: pd.Timestamp,
    policy: OutreachSettings,
    store: Store | str,
    data_dir: str | Path | None,
) -> OutreachReport:
    window = campaign_window(as_of, policy.cooldown_days)
    cooling: set[str] = set()
    taken: set[str] = set()
    try:
        with open_outbox(store, data_dir, create=False) as box:
            cooling = box.customers_in_cooldown(as_of, policy.cooldown_days)
            taken = box.keys_in_window(policy.campaign, window.label)
    except NoOutboxError:
        pass  # no outbox yet: nobody is in cooldown
    selection = select_contacts(scored, as_of, policy, in_cooldown=cooling, keys_taken=taken)
    url = store.url if isinstance(store, Store) else store
    return _report(selection, url, new_run=True, dry_run=True)


def _record(
    box: Outbox,
    scored: pd.DataFrame,
    as_of: pd.Timestamp,
    policy: OutreachSettings,
    explain: Callable[[list[str]], pd.DataFrame] | None,
    say: Progress,
) -> OutreachReport:
    """Select and record the run at `as_of`, unless it is recorded already."""
    run_id = run_id_for(policy.campaign, as_of)
    window = campaign_window(as_of, policy.cooldown_days)
    new_run = False
    if box.run_record(run_id) is None:
        cooling = box.customers_in_cooldown(as_of, policy.cooldown_days)
        taken = box.keys_in_window(policy.campaign, window.label)
        selection = select_contacts(scored, as_of, policy, in_cooldown=cooling, keys_taken=taken)
        if explain is not None:
            selection.rows = fill_reasons(selection.rows, explain)
        new_run = box.record_run(selection, policy)
    if new_run:
        c = selection.counts
        say(f"recorded run {run_id}: {c['contact']:,} contact, {c['control']:,} control")
    else:
        say(f"run {run_id} is already recorded; dispatching pending contacts only")
    record = box.run_record(run_id)
    assert record is not None  # recorded above, now or by an earlier run
    stored = Selection(
        run_id, policy.campaign, as_of, window, box.history(run_id), json.loads(record["counts"])
    )
    return _report(stored, box.url, new_run=new_run, dry_run=False)
