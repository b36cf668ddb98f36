"""`retain outreach run | status`: hand high-impact at-risk customers to outreach exactly once,
and show what each run selected and delivered. The CLI reads and writes; `serving.outreach.run`
computes."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from edge import (
    ConfigOption,
    DataOption,
    Progress,
    champions,
    given_store_url,
    handle_errors,
    parse_cutoff,
    read_tables,
    registry,
    settings_from,
    store_url,
    utc_now,
)
from features.contract import ContractError
from model.registry import NoChampionError
from serving.outreach.policy import WEBHOOK_URL_ENV, OutreachError
from store import StoreError

app = typer.Typer()

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="The store holding the outbox (default: RETAIN_STORE_URL, store.url, else "
        "<data>/store/retain.db).",
        show_default=False,
    ),
]


def _score(data: str, as_of, settings, progress: Progress):
    """The ranked list at `as_of` from the champion models, and a function that writes reasons
    for customers below the top of the list (a seam tests replace)."""
    from serving.core.ranking import score_population

    try:
        models = champions(registry(), progress)
    except NoChampionError as exc:
        raise OutreachError(str(exc)) from None
    tables = read_tables(data, progress, settings).tables
    population = score_population(tables, as_of, models, settings, progress=progress)
    return population.ranked, lambda ids: population.reasons(ids, models)


@app.command()
@handle_errors(ContractError, ValueError, StoreError)
def run(
    data: DataOption,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Score and select as of this date (UTC, exclusive).")
    ],
    store: StoreOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would be selected; write and send nothing.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed", help="Put contacts the receiver rejected (4xx) back to pending first."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Select at-risk, high-value customers and deliver every pending contact.

    Selected customers (with a held-out control group that is never contacted) are recorded in
    the outbox, then delivered by webhook if one is configured, else as a CSV file drop."""
    from serving.loop.handoff import drop_dir, hand_off
    from serving.loop.handoff import webhook_url as cases_webhook_url
    from serving.outreach.run import run_outreach
    from store import Store

    settings = settings_from(config)
    cutoff = parse_cutoff(as_of)
    progress = Progress()
    scored, explain = _score(data, cutoff, settings, progress)
    progress(f"scored {len(scored):,} customers; applying the outreach policy")
    webhook_url = os.environ.get(WEBHOOK_URL_ENV) or settings.outreach.webhook_url
    with Store(store or store_url(settings, data)) as shared:
        report = run_outreach(
            scored,
            cutoff,
            settings,
            data_dir=data,
            store=shared,
            webhook_url=webhook_url,
            dry_run=dry_run,
            retry_failed=retry_failed,
            explain=explain,
            progress=progress,
            open_cases=not dry_run,
            now=utc_now(),
        )
        if not dry_run:
            hand_off(
                shared,
                settings,
                url=cases_webhook_url(settings, dict(os.environ)),
                folder=drop_dir(settings, data),
            )
    typer.echo(report.summary())
    if dry_run and len(report.selection):
        columns = ["rank", "customer_id", "group", "churn_probability", "clv", "value_at_risk"]
        typer.echo(report.selection[columns].head(20).to_string(index=False))


@app.command()
@handle_errors(ValueError, StoreError)
def status(
    data: Annotated[
        str | None,
        typer.Option("--data", help="Data folder whose store's outbox to read."),
    ] = None,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Per run: selected, contact, control, pending, sent, failed."""
    from serving.outreach.outbox import open_outbox

    settings = settings_from(config)
    url = given_store_url(settings, data, store)
    with open_outbox(url, data, create=False) as box:
        summary = box.run_summary()
    if summary.empty:
        typer.echo("no outreach runs recorded yet")
        return
    table = summary.assign(as_of=summary["as_of"].dt.strftime("%Y-%m-%d %H:%M")).drop(
        columns="campaign"
    )
    typer.echo(table.to_string(index=False))
    totals = summary[["selected", "contact", "control", "pending", "sent", "failed"]].sum()
    typer.echo("total: " + ", ".join(f"{k} {int(v):,}" for k, v in totals.items()))
