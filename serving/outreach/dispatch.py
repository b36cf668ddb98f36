"""Dispatchers: deliver the outbox's pending contacts as a CSV file drop or a JSON webhook.

A contact becomes `sent` only once its channel has it: the CSV file renamed into place, or a 2xx
from the webhook. Everything else leaves it `pending`, retried by the next run, except a webhook
rejection that resending cannot fix (see below). A process killed at any point therefore
re-delivers at most the one contact in flight, under the same idempotency key, which the
receiver deduplicates.

Webhook: one JSON POST per contact with the key in the `Idempotency-Key` header.
- 2xx: sent.
- 408, 429, 5xx, timeouts and transport errors (refused or dropped connections): retried up to
  `max_attempts_per_run` times with exponential backoff and full jitter (a uniform delay in
  [0, min(backoff_max_s, backoff_base_s * 2**(attempt - 1))]; a numeric Retry-After is honoured
  up to backoff_max_s). When one contact exhausts its attempts the receiver is taken to be down:
  the pass stops and the rest stay pending for the next run, rather than waiting out every one.
- any other status (400, 401, 404, 422, 3xx...): `failed` with the status and the start of the
  body in `last_error`. Resending the same payload would be rejected again, so it is not retried
  automatically; `retain outreach run --retry-failed` puts failed contacts back to pending once
  the receiver or its credentials are fixed.

This is the one module in serving/ that reads the wall clock (`utc_now`): the time a receiver
accepted a contact is recorded as a fact about delivery; no selection depends on it.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from configs import OutreachSettings
from serving.core.columns import SCORE_COLUMNS
from serving.outreach.outbox import Outbox
from serving.outreach.policy import PENDING, OutreachError, slug

Progress = Callable[[str], None]

FILE_COLUMNS = (
    "idempotency_key",
    "run_id",
    "campaign",
    "as_of",
    *SCORE_COLUMNS[:2],  # customer_id, segment
    "rank",
    *SCORE_COLUMNS[2:],
)


def utc_now() -> datetime:
    """Wall-clock time of a delivery (the only clock read in serving/)."""
    return datetime.now(UTC)


@dataclass
class DispatchResult:
    channel: str
    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    stopped: str | None = None  # why a pass ended before every pending contact was tried
    files: list[Path] = field(default_factory=list)


def _iso(ts: Any) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).tz_localize("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# File drop


@contextmanager
def folder_lock(path: Path):
    """An exclusive lock on the file `path` (made if missing), held while one process writes a
    drop folder's files; another waits for it."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class FileDropDispatcher:
    """One CSV per run in `folder` (`<campaign>_<as_of>.csv`), with the run's contacts (never its
    controls). Written to a temporary file and renamed, so a reader never sees half a file; a
    rewrite after a crash gives the same content."""

    channel = "file"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def dispatch(self, outbox: Outbox, progress: Progress | None = None) -> DispatchResult:
        say = progress or (lambda _message: None)
        result = DispatchResult(self.channel)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = folder_lock(self.folder / ".outreach-drop.lock")
        except OSError as exc:
            raise OutreachError(
                f"cannot write the outreach file drop in {self.folder}: {exc.strerror or exc}"
            ) from None
        # Under the folder's lock, so two processes never write one run's file at once (the
        # second finds its contacts sent and writes nothing).
        with lock:
            for run_id in outbox.pending_runs():
                rows = outbox.contacts_for_file(run_id)
                path = self.folder / f"{slug(run_id)}.csv"
                self._write(rows, path)
                fresh = [row["id"] for row in rows if row["status"] == PENDING]
                outbox.mark_sent(fresh, self.channel, utc_now())
                result.delivered += len(fresh)
                result.files.append(path)
                say(f"file drop {path}: {len(rows):,} contacts")
        return result

    def _write(self, rows: list[dict[str, Any]], path: Path) -> None:
        frame = pd.DataFrame(rows, columns=[*FILE_COLUMNS, "id", "status"])
        frame["as_of"] = frame["as_of"].map(_iso)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                frame.loc[:, list(FILE_COLUMNS)].to_csv(handle, index=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise OutreachError(
                f"cannot write the outreach file drop {path}: {exc.strerror or exc}"
            ) from None


# ---------------------------------------------------------------------------------------------
# Webhook


def payload(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON body posted for one contact."""

    def num(v: Any) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    reasons = [row.get(f"reason_{i}") for i in (1, 2, 3)]
    return {
        "idempotency_key": row["idempotency_key"],
        "campaign": row["campaign"],
        "run_id": row["run_id"],
        "as_of": _iso(row["as_of"]),
        "customer_id": row["customer_id"],
        "segment": row.get("segment"),
        "rank": int(row["rank"]),
        "churn_probability": num(row.get("churn_probability")),
        "clv": num(row.get("clv")),
        "clv_low": num(row.get("clv_low")),
        "clv_high": num(row.get("clv_high")),
        "value_at_risk": num(row.get("value_at_risk")),
        "tier": row.get("tier"),
        "reasons": [r for r in reasons if r],
        "churn_model_version": row.get("churn_model_version"),
        "clv_model_version": row.get("clv_model_version"),
    }


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_s, base_s * 2**(attempt - 1))] after attempt `attempt`."""
    return rng.uniform(0.0, min(max_s, base_s * 2.0 ** (attempt - 1)))


def is_transient(status_code: int) -> bool:
    return status_code in (408, 429) or status_code >= 500


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # absent, or an HTTP date (not worth reading the clock for)


class WebhookDispatcher:
    """POST each pending contact as JSON, with retries; see the module docstring for the rules.
    Any queue with the outbox's delivery methods (`pending_contacts`, which claims a batch for
    this delivery, `release`, `mark_attempt`, `mark_sent`, `mark_error`) and rows with `id` and `idempotency_key` can be delivered, with
    `payload_of` making each row's body (the cases' hand-offs are)."""

    channel = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        claim_lease_s: float = 60.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        payload_of: Callable[[dict[str, Any]], dict[str, Any]] = payload,
        setting: str = "outreach.webhook_url or RETAIN_OUTREACH_WEBHOOK_URL",
    ) -> None:
        try:
            scheme = httpx.URL(url).scheme
        except (httpx.InvalidURL, TypeError) as exc:
            raise OutreachError(f"webhook URL {url!r} ({setting}) is not a URL: {exc}") from None
        if scheme not in ("http", "https"):
            raise OutreachError(
                f"webhook URL must start with http:// or https://, got {url!r} ({setting})"
            )
        self._payload = payload_of
        self.url = url
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.lease = timedelta(seconds=claim_lease_s)
        self._client = client
        self._sleep = sleep
        self._rng = rng or random.Random()

    @classmethod
    def from_settings(cls, url: str, policy: OutreachSettings, **options: Any) -> WebhookDispatcher:
        return cls(
            url,
            timeout_s=policy.webhook_timeout_s,
            max_attempts=policy.max_attempts_per_run,
            backoff_base_s=policy.backoff_base_s,
            backoff_max_s=policy.backoff_max_s,
            claim_lease_s=policy.claim_lease_s,
            **options,
        )

    def dispatch(self, outbox: Outbox, progress: Progress | None = None) -> DispatchResult:
        """Claim pending contacts a batch at a time and post them, until none is left or the
        receiver is taken to be down; the claims on any left pending are given back."""
        say = progress or (lambda _message: None)
        result = DispatchResult(self.channel)
        client = self._client or httpx.Client(timeout=self.timeout_s)
        tried = 0
        try:
            while not result.stopped and (rows := outbox.pending_contacts(utc_now(), self.lease)):
                for row in rows:
                    outcome, error, attempts = self._deliver(client, outbox, row)
                    result.attempts += attempts
                    if outcome == "sent":
                        result.delivered += 1
                    elif outcome == "failed":
                        result.failed += 1
                    else:
                        result.stopped = (
                            f"{error} after {attempts} attempts; receiver taken to be "
                            f"unavailable, contacts left pending for the next run"
                        )
                        break
                    tried += 1
                    if tried % 100 == 0:
                        say(f"webhook: {tried:,} contacts tried")
        finally:
            if self._client is None:
                client.close()
            outbox.release()
        if tried:
            say(f"webhook: {result.delivered:,} delivered, {result.failed:,} failed")
        return result

    def _deliver(self, client: httpx.Client, outbox: Outbox, row: dict[str, Any]):
        """Try one contact; returns (sent|failed|pending, last error, attempts made)."""
        body = json.dumps(self._payload(row), allow_nan=False).encode("utf-8")
        headers = {"Idempotency-Key": row["idempotency_key"], "Content-Type": "application/json"}
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            outbox.mark_attempt(row["id"], utc_now(), self.lease)
            wait: float | None = None
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                code = response.status_code
                if 200 <= code < 300:
                    outbox.mark_sent([row["id"]], self.channel, utc_now())
                    return "sent", "", attempt
                error = f"HTTP {code}: {response.text[:200]}"
                if not is_transient(code):
                    outbox.mark_error(row["id"], error, final=True)
                    return "failed", error, attempt
                wait = _retry_after(response)
            outbox.mark_error(row["id"], error, final=False)
            if attempt < self.max_attempts:
                delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s, self._rng)
                self._sleep(delay if wait is None else min(max(wait, delay), self.backoff_max_s))
        return "pending", error, self.max_attempts
