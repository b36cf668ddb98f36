"""`retain monitor`: the monitoring reports with the retrain trigger.

`retain monitor` compares the current scored snapshot (scored now when there is none for
`--as-of`) with the champion's reference (the evaluation snapshot logged with its training run),
measures matured performance on past snapshots, CX KPIs and the outreach effect, writes the
reports into `--out`, logs them to the MLflow experiment `monitoring.experiment`, and exits 3
when a retrain is due (0 otherwise), so a scheduler can chain `retain retrain` on it. With
`--cluster` the population is scored per partition on Dask (when no list is stored for the
date); the rest reads the history in this process.

The work is `monitoring.monitor.monitor`; `retain retrain` (training's CLI) is what a scheduler
chains on exit status 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge import (
    ClusterOption,
    ConfigOption,
    Progress,
    champions,
    cluster,
    handle_errors,
    parse_cutoff,
    partitions,
    read_tables,
    registry,
    settings_from,
    store_url,
)
from features.contract import ContractError
from model.registry import NoChampionError

app = typer.Typer()

EXIT_RETRAIN_DUE = 3
EXIT_LOCKED = 4
LOCK_NAME = ".retain-retrain.lock"
# Matured scoring dates labelled for performance (one pass of build_labels each).
MATURED_DATES = 6
REFERENCE = "reference"


@app.command()
@handle_errors(ContractError, ValueError, NoChampionError, FileNotFoundError)
def monitor(
    data: Annotated[
        str, typer.Option("--data", help="Data folder (contract tables).", show_default=False)
    ],
    as_of: Annotated[
        str, typer.Option("--as-of", help="Monitor as of this date (UTC), e.g. 2026-01-01.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the reports.", show_default=False)],
    address: ClusterOption = None,
    config: ConfigOption = None,
) -> None:
    """Drift, matured performance, CX KPIs and the outreach effect against the champion; exit
    status 3 when a retrain is due, 0 otherwise. With --cluster, the population is scored per
    partition on Dask when no list is stored for --as-of; matured labels and KPIs read the
    history here."""
    from features.sources import is_sql_url
    from monitoring.monitor import monitor as run_monitor
    from serving.score_store import ScoreStore

    settings = settings_from(config)
    m = settings.monitoring
    cutoff = parse_cutoff(as_of)
    if is_sql_url(data):
        raise typer.BadParameter(
            "monitoring keeps its scored lists in the data folder; give a folder",
            param_hint="--data",
        )
    progress = Progress()
    reg = registry()
    models = champions(reg, progress)
    # A folder that is not partitioned is refused before a cluster is started for it.
    parts = partitions(data, progress, settings) if address else None

    def on_cluster():
        # Started only when the population must be scored, and only for that.
        from serving.core.ranking import score_partitions

        with cluster(address, progress) as client:
            scored, checked = score_partitions(
                client, parts, cutoff, models, settings, progress=progress
            )
        typer.echo(checked.summary(), err=True)
        return scored

    result = run_monitor(
        ScoreStore(data),
        lambda: read_tables(data, progress, settings).tables,
        cutoff,
        out,
        settings,
        registry=reg,
        champions=models,
        source=str(data),
        store_url=store_url(settings, data),
        progress=progress,
        score_now=on_cluster if address else None,
    )
    summary = result.summary

    typer.echo(f"reports:  {out.resolve()}")
    for path in result.written:
        typer.echo(f"  {path.name}")
    typer.echo(f"logged:   run {result.run_id} in experiment {m.experiment} ({reg.uri})")
    share = summary["drift_share"]
    typer.echo(
        "drift:    "
        + ("not measured" if share is None else f"{share:.0%} of tested columns")
        + f" (threshold {summary['drift_share_threshold']:.0%})"
    )
    weighted = summary.get("weighted_drift")
    if weighted is not None:
        typer.echo(
            f"weighted: {weighted:.0%} of the champions' importance in drifted features "
            f"(threshold {summary['weighted_drift_threshold']:.0%})"
        )
    typer.echo(f"matured:  {result.performance.message}")
    if summary.get("recovery_status") is not None:
        typer.echo(f"recovery: {summary['recovery_message']}")
    if summary["retrain_due"]:
        typer.echo("RETRAIN DUE:")
        for reason in summary["reasons"]:
            typer.echo(f"  - {reason}")
        for note in summary["notes"]:
            typer.echo(f"  note: {note}")
        raise typer.Exit(EXIT_RETRAIN_DUE)
    typer.echo("no retrain due")
    for note in summary["notes"]:
        typer.echo(f"  note: {note}")
