"""`retain train | backtest | retrain | models | promote`: training runs and backtests (in
this process, or on a Dask cluster with `--cluster`; a retrain runs under a lock, for a
scheduler chained on `retain monitor`), the registry listing, manual promotion."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge import (
    ClusterOption,
    ConfigOption,
    DataOption,
    Progress,
    cluster,
    handle_errors,
    parse_cutoff,
    partitions,
    read_tables,
    registry,
    settings_from,
)
from features.contract import ContractError

app = typer.Typer()

MODEL_CHOICES = ("churn", "clv")


def _effective_config(settings) -> str:
    import yaml

    return yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)


@app.command()
@handle_errors(ContractError, ValueError)
def train(
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="Data folder or SQLAlchemy URL (contract tables).", show_default=False
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Treat the data as known only before this date (default: the day after the latest timestamp).",
        ),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option("--horizon", min=1, help="Horizon in days (overrides horizon_days)."),
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option("--table", help="One-row-per-customer export with a label (CSV/Parquet)."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="With --table: the customer id column.")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="With --table: the churn label column.")
    ] = None,
    address: ClusterOption = None,
    config: ConfigOption = None,
) -> None:
    """Train the churn and CLV models, log the run to MLflow, register them and apply the gate."""
    settings = settings_from(config)
    if horizon is not None:
        settings = settings.model_copy(update={"horizon_days": horizon})
    progress = Progress()
    if table is not None:
        if address:
            raise typer.BadParameter("--cluster reads a partitioned --data folder, not --table")
        if data is not None or not id_column or not label:
            raise typer.BadParameter(
                "--table needs --id and --label, and cannot be combined with --data"
            )
        from training.tabular_run import train_labelled_table

        reg = registry()
        report = train_labelled_table(
            table, id_column, label, settings, registry=reg, progress=progress
        )
        _print_report(report, reg)
        return
    if data is None:
        raise typer.BadParameter(
            "give --data DIR (contract tables) or --table FILE --id COL --label COL"
        )
    reg = registry()
    report = _train(data, settings, parse_cutoff(as_of) if as_of else None, reg, progress, address)
    _print_report(report, reg)


@contextlib.contextmanager
def _history(data: str, settings, progress, address: str | None):
    """What training reads: without `--cluster` the validated tables in this process; with it
    the partitions, validated and kept on the cluster, whose workers also fit the boosters
    (`lightgbm.dask`)."""
    from training.boosting import on_dask
    from training.history import ClusterHistory, History

    # A folder that is not partitioned is refused before a cluster is started for it.
    parts = partitions(data, progress, settings) if address else None
    with cluster(address, progress) as client:
        if client is None:
            yield History(read_tables(data, progress, settings).tables)
            return
        history = ClusterHistory.load(client, parts, progress=progress)
        typer.echo(history.checked.summary(), err=True)
        with on_dask(client):
            yield history


def _train(data: str, settings, known_until, reg, progress, address: str | None = None):
    from training.run import train_and_register

    with _history(data, settings, progress, address) as history:
        return train_and_register(
            history,
            settings,
            source=str(data),
            config_text=_effective_config(settings),
            registry=reg,
            known_until=known_until,
            progress=progress,
        )


def _print_report(report, reg) -> None:
    typer.echo(f"run {report.run_id} (experiment {report.experiment_id})")
    for k, v in report.headline.items():
        typer.echo(f"  {k:<22} {v:.4f}")
    for kind, version in report.versions.items():
        state = "champion" if report.promoted[kind] else "challenger"
        typer.echo(f"  {kind} v{version}: {state} - {report.decisions[kind]}")
    if report.timings:
        typer.echo("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()))
    typer.echo(
        f"Open the MLflow UI with: mlflow ui --backend-store-uri {reg.uri}  (store: {reg.store})"
    )


@app.command()
@handle_errors(ContractError, ValueError)
def backtest(
    data: DataOption,
    cutoffs: Annotated[
        str,
        typer.Option(
            "--cutoffs",
            help="Comma-separated evaluation cutoffs, e.g. 2011-06-11,2011-07-11; each is "
            "trained on what was known before it and scored on the horizon after it.",
            show_default=False,
        ),
    ],
    horizon: Annotated[
        int | None,
        typer.Option("--horizon", min=1, help="Horizon in days (overrides horizon_days)."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for backtest.md, backtest.csv, intervals.csv, plots."),
    ] = Path("backtest"),
    n_boot: Annotated[
        int, typer.Option("--bootstrap", min=20, help="Bootstrap resamples for the intervals.")
    ] = 200,
    address: ClusterOption = None,
    config: ConfigOption = None,
) -> None:
    """Replay training and scoring at several cutoffs and compare the models with every baseline,
    with paired bootstrap intervals of the difference to the best one; logged to MLflow."""
    from training.backtest import backtest as run_backtest
    from training.backtest import log_backtest, markdown, write_report

    settings = settings_from(config)
    if horizon is not None:
        settings = settings.model_copy(update={"horizon_days": horizon})
    stamps = [parse_cutoff(c.strip(), "--cutoffs") for c in cutoffs.split(",") if c.strip()]
    progress = Progress()
    with _history(data, settings, progress, address) as history:
        run = run_backtest(history, settings, stamps, n_boot=n_boot, progress=progress)
    written = write_report(run, out)
    reg = registry()
    run_id = log_backtest(
        run,
        reg,
        settings.training.experiment,
        source=str(data),
        config_text=_effective_config(settings),
        report=written,
    )
    typer.echo(markdown(run).split("\n## churn")[0])
    typer.echo(f"report: {', '.join(str(p) for p in written)}")
    typer.echo(f"MLflow run {run_id} (a child run per cutoff) in {reg.uri}")


@app.command()
def models() -> None:
    """List registered versions with their aliases, gate decisions and headline metrics."""
    from model.registry import MODEL_NAMES

    reg = registry()
    any_rows = False
    for name in MODEL_NAMES:
        for row in reg.list_versions(name):
            any_rows = True
            tags = row["tags"]
            aliases = ",".join(row["aliases"]) or "-"
            typer.echo(
                f"{name:<6} v{row['version']:<4} {aliases:<22} {tags.get('gate_metric', '?')}={tags.get('gate_value', '?'):<8} "
                f"eval {tags.get('evaluation_cutoff', '?')}  {tags.get('promotion', '')}  {tags.get('gate_reason', '')}"
            )
            if tags.get("promotion") == "manual":
                typer.echo(f"{'':<12}manual promotion: {tags.get('promotion_reason', '')}")
    if not any_rows:
        typer.echo("no registered models yet: run `retain train --data DIR` first")


@app.command()
@handle_errors(ValueError)
def promote(
    model: Annotated[str, typer.Option("--model", help="churn or clv")],
    version: Annotated[int, typer.Option("--version", min=1)],
    reason: Annotated[str, typer.Option("--reason", help="Why, recorded on the version.")],
) -> None:
    """Make a version the champion by hand; the reason is recorded on the version."""
    from mlflow.exceptions import MlflowException

    if model not in MODEL_CHOICES:
        raise typer.BadParameter(
            f"expected one of {MODEL_CHOICES}, got {model!r}", param_hint="--model"
        )
    if not reason.strip():
        raise typer.BadParameter("a manual promotion needs a reason", param_hint="--reason")
    reg = registry()
    try:
        reg.client.get_model_version(model, str(version))
    except MlflowException:
        raise ValueError(f"model {model} has no version {version}; see `retain models`") from None
    reg.record_promotion(model, str(version), kind="manual", reason=reason.strip())
    typer.echo(f"{model} v{version} is now champion ({reason.strip()})")


EXIT_LOCKED = 4


@app.command()
@handle_errors()
def retrain(
    data: Annotated[
        str,
        typer.Option(
            "--data", help="Data folder or SQLAlchemy URL (contract tables).", show_default=False
        ),
    ],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Treat the data as known only before this date (default: the day after the latest timestamp).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Retrain both models on fresh features under a lock; the promotion gate decides whether
    the new versions replace the champions. A failed retrain leaves the champions serving."""
    from training.lock import LockHeldError, lock_path, retrain_lock

    settings = settings_from(config)
    cutoff = parse_cutoff(as_of) if as_of else None
    progress = Progress()
    reg = registry()
    before = reg.champions()
    serving = ", ".join(f"{n} v{v}" for n, v in before.items() if v is not None) or "none"
    lock = lock_path(data)
    try:
        with retrain_lock(lock, warn=lambda msg: typer.echo(msg, err=True)):
            progress(f"holding the retrain lock {lock}; champions now: {serving}")
            try:
                report = _train(data, settings, cutoff, reg, progress)
            except Exception as exc:
                typer.echo(f"error: retrain failed: {exc}", err=True)
                typer.echo(
                    f"the current champions keep serving ({serving}); nothing was promoted",
                    err=True,
                )
                expected = isinstance(exc, (ContractError, ValueError))
                sys.exit(2 if expected else 1)
    except LockHeldError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    _print_report(report, reg)
    if not any(report.promoted.values()):
        typer.echo(f"the gate kept the current champions serving ({serving})")
