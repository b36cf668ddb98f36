"""`retain score | outreach ... | serve`: batch scoring, outreach runs and the HTTP service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from configs.cli import ConfigOption, Progress, handle_errors, parse_cutoff, settings_from
from features.contract import ContractError
from serving.outreach_cli import app as outreach_app
from serving.scoring import NoChampionError

app = typer.Typer()
app.add_typer(
    outreach_app,
    name="outreach",
    help="Hand high-impact at-risk customers to outreach (exactly once), and show its status.",
    no_args_is_help=True,
)

TOP_SHOWN = 5


@app.command()
@handle_errors(ContractError, ValueError, NoChampionError, FileNotFoundError)
def score(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Data folder (<table>.parquet|.csv) or SQLAlchemy URL.",
            show_default=False,
        ),
    ],
    as_of: Annotated[
        str,
        typer.Option("--as-of", help="Score as of this date (UTC, exclusive), e.g. 2025-06-30."),
    ],
    out: Annotated[
        Path, typer.Option(help="Ranked list to write, .csv or .parquet.", show_default=False)
    ],
    snapshot_dir: Annotated[
        Path | None,
        typer.Option(
            "--snapshot-dir",
            help="Folder for the scored snapshot the HTTP service reads (written to "
            "<folder>/scores/<date>/); default: the --data folder. Required for a SQL source.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Score every customer with the champion models and write them ranked by value at risk,
    with plain-language reasons for the top of the list (scoring.reasons_top_n)."""
    from features.build import build_features
    from features.cli import load_tables
    from features.sources import is_sql_url
    from serving.batch import check_output_path, rank_features, save_snapshot, write_scores
    from serving.scoring import load_champions

    settings = settings_from(config)
    cutoff = parse_cutoff(as_of)
    check_output_path(out)
    if snapshot_dir is None:
        if is_sql_url(data):
            raise typer.BadParameter(
                "a SQL source has no folder to keep the scored snapshot in; give --snapshot-dir DIR",
                param_hint="--snapshot-dir",
            )
        snapshot_dir = Path(data)
    progress = Progress()
    progress("loading the champion models from the MLflow registry")
    champions = load_champions()
    progress(f"champion models: churn v{champions.churn_version}, clv v{champions.clv_version}")
    tables = load_tables(data, progress).tables
    progress(f"building features as of {cutoff:%Y-%m-%d %H:%M} UTC")
    features = build_features(tables, cutoff, settings)
    scores = rank_features(features, champions, settings, progress=progress)
    write_scores(scores, out)
    progress(f"ranked list of {len(scores):,} customers -> {out}")
    folder = save_snapshot(snapshot_dir, cutoff, scores, features)
    progress(f"scored snapshot -> {folder}")
    _print_top(scores, out, folder)


def _print_top(scores, out: Path, folder: Path) -> None:
    typer.echo(f"ranked list: {out} ({len(scores):,} customers, highest value at risk first)")
    typer.echo(f"snapshot:    {folder}")
    if scores.empty:
        typer.echo("no customers in the population at this date")
        return
    counts = scores["tier"].value_counts()
    typer.echo(
        "tiers:       "
        + ", ".join(f"{t} {int(counts.get(t, 0)):,}" for t in ("high", "medium", "low"))
    )
    typer.echo(f"top {min(TOP_SHOWN, len(scores))}:")
    for rank, row in enumerate(scores.head(TOP_SHOWN).itertuples(index=False), start=1):
        segment = f" [{row.segment}]" if row.segment else ""
        typer.echo(
            f"  {rank}. {row.customer_id}{segment}  risk {row.churn_probability:.0%}  "
            f"clv {row.clv:,.0f} ({row.clv_low:,.0f}-{row.clv_high:,.0f})  "
            f"value at risk {row.value_at_risk:,.0f}  tier {row.tier}"
        )
        reasons = [r for r in (row.reason_1, row.reason_2, row.reason_3) if r]
        typer.echo("     " + ("; ".join(reasons) if reasons else "(no factor raises the risk)"))
