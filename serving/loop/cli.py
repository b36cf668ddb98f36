"""`retain ingest | compact | cases ...`: rows into the inbox from files, the inbox folded into
the tables, and the recovery case queue from a shell."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from edge import (
    ConfigOption,
    Progress,
    champions,
    given_store_url,
    handle_errors,
    read_tables,
    registry,
    settings_from,
    store_url,
    utc_now,
)
from features.contract import ContractError
from model.registry import NoChampionError
from serving.loop.cases import CaseError
from serving.outreach.policy import OutreachError
from store import StoreError

app = typer.Typer()
cases_app = typer.Typer(no_args_is_help=True)

# `retain compact` may be told to stop itself at a named step: the crash-safety tests use it.
CRASH_ENV = "RETAIN_TEST_CRASH_AT"
CHUNK_ROWS = 10_000

DataDir = Annotated[
    str,
    typer.Option(
        "--data", help="Data folder (or SQLAlchemy URL) the rows belong to.", show_default=False
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="Store database (default: RETAIN_STORE_URL, store.url, or <data>/store/retain.db).",
        show_default=False,
    ),
]


def _table_of(path: Path, given: str | None) -> str:
    if given:
        if given not in ("events", "feedback"):
            raise typer.BadParameter("expected events or feedback", param_hint="--table")
        return given
    stem = path.name.split(".")[0].lower()
    for name in ("events", "feedback"):
        if stem.startswith(name):
            return name
    raise typer.BadParameter(
        f"cannot tell which table {path.name} holds: name it events*.csv|parquet|jsonl or "
        "feedback*..., or give --table"
    )


def _read_rows(path: Path):
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, dtype=False)
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


@app.command()
@handle_errors(ContractError, ValueError, StoreError, FileNotFoundError, OutreachError)
def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="CSV, Parquet or JSON (lines) files of rows.")
    ],
    data: DataDir,
    table: Annotated[
        str | None,
        typer.Option("--table", help="events or feedback (default: from each file's name)."),
    ] = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Ingest rows into the inbox (checked by the data contract, rejected rows quarantined with
    their reason, a row sent twice stored once), then rescore their customers with the champion
    models and open recovery cases for the negative moments, as the service does."""
    from serving.loop.ingest import ingest_rows
    from store import Store

    settings = settings_from(config)
    progress = Progress()
    url = store or store_url(settings, data)
    import pandas as pd

    # Read once: the known customers for the checks, and the history the loop's step starts
    # from (it catches up with the rows stored below by itself).
    tables = read_tables(data, progress, settings).tables
    known = pd.Index(tables.customers["customer_id"].astype(str))
    with Store(url) as db:
        for path in files:
            name = _table_of(path, table)
            rows = _read_rows(path)
            progress(f"{path}: {len(rows):,} rows for {name}")
            totals = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0}
            for start in range(0, max(len(rows), 1), CHUNK_ROWS):
                chunk = rows.iloc[start : start + CHUNK_ROWS]
                result = ingest_rows(
                    db, name, chunk, known, received_at=utc_now(), source=f"file:{path.name}"
                )
                for key in ("received", "stored", "duplicates"):
                    totals[key] += getattr(result, key)
                totals["rejected"] += len(result.rejected)
                for r in result.rejected[:10]:
                    typer.echo(
                        f"  rejected {path.name} row {start + r['item'] + 1}: {r['reason']}",
                        err=True,
                    )
            kept = " (kept in the quarantine with their reason)" if totals["rejected"] else ""
            typer.echo(
                f"{path.name} -> {name}: {totals['received']:,} rows, {totals['stored']:,} "
                f"stored, {totals['duplicates']:,} already in the inbox, {totals['rejected']:,} "
                f"rejected{kept}"
            )
        _run_loop(db, data, tables, settings, progress)


def _run_loop(db, data: str, tables, settings, progress: Progress) -> None:
    from serving.loop.handoff import drop_dir, hand_off, webhook_url
    from serving.loop.history import History
    from serving.loop.process import process_pending

    try:
        models = champions(registry(), progress)
    except NoChampionError as exc:
        typer.echo(
            f"warning: {exc}\nThe rows wait in the inbox; they are rescored and turned into cases "
            "by `retain serve` or the next `retain ingest` once champions exist.",
            err=True,
        )
        return
    history = History(tables)
    handled = process_pending(db, history, models, settings, now=utc_now(), progress=progress)
    by_outcome: dict[str, int] = {}
    for m in handled.moments:
        by_outcome[m["outcome"]] = by_outcome.get(m["outcome"], 0) + 1
    typer.echo(
        f"loop: {handled.rows:,} rows handled, {len(handled.scores):,} customers rescored, "
        f"{len(handled.moments):,} negative moments"
        + (
            ": " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_outcome.items()))
            if by_outcome
            else ""
        )
    )
    from serving.loop.cases import CaseBook

    book = CaseBook(db, settings.loop)
    for case_id in handled.opened()[:20]:
        case = book.get(case_id)
        typer.echo(
            f"  case {case['id']} [{case['priority']}] {case['customer_id']} -> {case['owner']}, "
            f"due {case['due_at'][:16]}: {case['reason_text'][:160]}"
        )
    sent = hand_off(
        db, settings, url=webhook_url(settings, dict(os.environ)), folder=drop_dir(settings, data)
    )
    if sent["files"] or sent["delivered"]:
        typer.echo(
            f"hand-off: {sent['delivered']:,} by webhook, files {[str(p) for p in sent['files']]}"
            + (f"; {sent['stopped']}" if sent["stopped"] else "")
        )


@app.command()
@handle_errors(ContractError, ValueError, StoreError)
def compact(data: DataDir, store: StoreOption = None, config: ConfigOption = None) -> None:
    """Fold the inbox's handled rows into the data folder's tables, atomically (a crash at any
    point leaves the old or the new state: no row lost or doubled)."""
    from features.compact import compact as fold
    from store import Store

    settings = settings_from(config)
    progress = Progress()
    with Store(store or store_url(settings, data)) as db:
        result = fold(data, db, progress=progress, crash_at=os.environ.get(CRASH_ENV) or None)
    folded = ", ".join(f"{n:,} {name}" for name, n in result.folded.items()) or "nothing"
    typer.echo(
        f"compacted: {folded} folded into the tables; {result.removed:,} rows left the inbox"
    )
    if result.waiting:
        typer.echo(f"{result.waiting:,} rows stay in the inbox: not handled by the loop yet")


def _book(data: str | None, store: str | None, config: Path | None):
    from serving.loop.cases import CaseBook
    from store import Store

    settings = settings_from(config)
    return CaseBook(Store(given_store_url(settings, data, store), create=False), settings.loop)


OptionalData = Annotated[str | None, typer.Option("--data", help="Data folder whose store to use.")]


@cases_app.command("list")
@handle_errors(CaseError, StoreError)
def list_cases(
    data: OptionalData = None,
    store: StoreOption = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="open, in_progress, ...")
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    priority: Annotated[list[str] | None, typer.Option("--priority", help="p1, p2, p3")] = None,
    customer: Annotated[str | None, typer.Option("--customer")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="recovery or retention")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only active cases past due.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    config: ConfigOption = None,
) -> None:
    """The case queue: overdue first, then priority, then due time."""
    book = _book(data, store, config)
    total, rows = book.list(
        status=status or (),
        owner=owner,
        priority=priority or (),
        customer_id=customer,
        kind=kind,
        overdue=overdue,
        now=utc_now(),
        limit=limit,
    )
    typer.echo(f"{total:,} cases" + (f" (first {len(rows)})" if total > len(rows) else ""))
    for c in rows:
        typer.echo(
            f"{c['id']:>6} {c['status']:<12} {c['priority']} {c['kind']:<9} {c['customer_id']:<14} "
            f"{c['owner']:<14} due {c['due_at'][:16]}  {c['reason']}"
        )


@cases_app.command("show")
@handle_errors(CaseError, StoreError)
def show_case(
    case_id: Annotated[int, typer.Argument()],
    data: OptionalData = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """A case with its trigger and history, as JSON."""
    typer.echo(json.dumps(_book(data, store, config).get(case_id), indent=2, default=str))


@cases_app.command("transition")
@handle_errors(CaseError, StoreError)
def transition_case(
    case_id: Annotated[int, typer.Argument()],
    to: Annotated[
        str, typer.Argument(help="in_progress, resolved, unreachable, declined, expired")
    ],
    actor: Annotated[str, typer.Option("--actor", help="Who makes the change.")],
    resolution: Annotated[str | None, typer.Option("--resolution")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Reassign to this owner.")] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Refuse if the case changed since.")
    ] = None,
    data: OptionalData = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Move a case through its lifecycle (closing needs --resolution)."""
    case = _book(data, store, config).transition(
        case_id,
        to,
        actor=actor,
        now=utc_now(),
        version=version,
        resolution=resolution,
        note=note,
        owner=owner,
    )
    typer.echo(
        f"case {case['id']} is {case['status']} (version {case['version']}, owner {case['owner']})"
    )


@cases_app.command("escalate")
@handle_errors(CaseError, StoreError, OutreachError)
def escalate_cases(
    data: OptionalData = None, store: StoreOption = None, config: ConfigOption = None
) -> None:
    """Escalate overdue cases and expire old ones by `loop.escalation` (safe from cron), then
    hand the escalated ones off again."""
    from serving.loop.handoff import drop_dir, hand_off, webhook_url

    settings = settings_from(config)
    book = _book(data, store, config)
    counts = book.escalate(now=utc_now())
    sent = hand_off(
        book.store,
        settings,
        url=webhook_url(settings, dict(os.environ)),
        folder=drop_dir(settings, data),
    )
    typer.echo(
        f"escalated {counts['escalated']:,} cases, expired {counts['expired']:,}; handed off {sent['delivered']:,} by webhook"
    )


app.add_typer(cases_app, name="cases", help="The recovery and retention case queue.")

db_app = typer.Typer(no_args_is_help=True)


def _store_engine(data: str | None, store: str | None, config: Path | None, *, create: bool):
    from store import StoreError as Error
    from store import open_engine

    url = given_store_url(settings_from(config), data, store)
    return url, open_engine(
        url,
        create=create,
        on_missing=lambda path: Error(
            f"no store at {path}: `retain db upgrade --data DIR` makes one"
        ),
        on_error=lambda message: Error(f"store: {message}"),
    )


@db_app.command("upgrade")
@handle_errors(StoreError)
def db_upgrade(
    data: OptionalData = None, store: StoreOption = None, config: ConfigOption = None
) -> None:
    """Create the store or bring its schema to the newest revision (migrations; safe to run
    again, and from several replicas at once on PostgreSQL)."""
    from sqlalchemy.exc import SQLAlchemyError

    from store import redact
    from store.migrate import upgrade

    url, engine = _store_engine(data, store, config, create=True)
    try:
        before, after = upgrade(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade {redact(url)}: {exc}") from None
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"{redact(url)}: already at {after} (the newest)")
    else:
        typer.echo(f"{redact(url)}: {before or 'empty'} -> {after}")


@db_app.command("current")
@handle_errors(StoreError)
def db_current(
    data: OptionalData = None, store: StoreOption = None, config: ConfigOption = None
) -> None:
    """The store's schema revision, and whether it is behind the code."""
    from store import redact
    from store.migrate import current, head

    url, engine = _store_engine(data, store, config, create=False)
    try:
        with engine.connect() as conn:
            rev = current(conn)
    finally:
        engine.dispose()
    state = "the newest" if rev == head() else f"behind {head()}: run `retain db upgrade`"
    typer.echo(f"{redact(url)}: {rev or 'no revision'} ({state})")


app.add_typer(db_app, name="db", help="The store's schema: migrations (Alembic).")
