"""`retain train | models | promote`: training runs, the registry listing, manual promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from configs.cli import ConfigOption, Progress, handle_errors, parse_cutoff, settings_from
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
    config: ConfigOption = None,
) -> None:
    """Train the churn and CLV models, log the run to MLflow, register them and apply the gate."""
    settings = settings_from(config)
    if horizon is not None:
        settings = settings.model_copy(update={"horizon_days": horizon})
    progress = Progress()
    if table is not None:
        if data is not None or not id_column or not label:
            raise typer.BadParameter(
                "--table needs --id and --label, and cannot be combined with --data"
            )
        from training.static import train_static_table

        report = train_static_table(table, id_column, label, settings, progress=progress)
        _print_report(report)
        return
    if data is None:
        raise typer.BadParameter(
            "give --data DIR (contract tables) or --table FILE --id COL --label COL"
        )
    report = train_data(data, settings, parse_cutoff(as_of) if as_of else None, progress)
    _print_report(report)


def train_data(data: str, settings, known_until, progress):
    """Read and validate the contract tables at `data` (folder or SQL URL), then train and
    register both models (`training.run.train_and_register`); its `RunReport`."""
    from features.cli import load_tables
    from training.run import train_and_register

    tables = load_tables(data, progress).tables
    return train_and_register(
        tables,
        settings,
        source=str(data),
        config_text=_effective_config(settings),
        known_until=known_until,
        progress=progress,
    )


def _print_report(report) -> None:
    from training.registry import tracking_uri

    typer.echo(f"run {report.run_id} (experiment {report.experiment_id})")
    for k, v in report.headline.items():
        typer.echo(f"  {k:<22} {v:.4f}")
    for kind, version in report.versions.items():
        state = "champion" if report.promoted[kind] else "challenger"
        typer.echo(f"  {kind} v{version}: {state} - {report.decisions[kind]}")
    if report.timings:
        typer.echo("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()))
    uri = tracking_uri()
    store = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else uri
    typer.echo(f"Open the MLflow UI with: mlflow ui --backend-store-uri {uri}  (store: {store})")


@app.command()
def models() -> None:
    """List registered versions with their aliases, gate decisions and headline metrics."""
    from training.registry import MODEL_NAMES, connect, list_versions

    client = connect()
    any_rows = False
    for name in MODEL_NAMES:
        for row in list_versions(client, name):
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

    from training.registry import connect, record_promotion

    if model not in MODEL_CHOICES:
        raise typer.BadParameter(
            f"expected one of {MODEL_CHOICES}, got {model!r}", param_hint="--model"
        )
    if not reason.strip():
        raise typer.BadParameter("a manual promotion needs a reason", param_hint="--reason")
    client = connect()
    try:
        client.get_model_version(model, str(version))
    except MlflowException:
        raise ValueError(f"model {model} has no version {version}; see `retain models`") from None
    record_promotion(client, model, str(version), kind="manual", reason=reason.strip())
    typer.echo(f"{model} v{version} is now champion ({reason.strip()})")
