"""`retain score | outreach ... | serve`: batch scoring, outreach runs and the HTTP service."""

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
)
from features.contract import ContractError
from model.registry import NoChampionError
from serving.loop.cli import app as loop_app
from serving.outreach.cli import app as outreach_app
from serving.web.cli import users_app

app = typer.Typer()
app.registered_commands += loop_app.registered_commands
app.registered_groups += loop_app.registered_groups
app.add_typer(
    outreach_app,
    name="outreach",
    help="Hand high-impact at-risk customers to outreach (exactly once), and show its status.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users", help="People of the CX workspace (/ui) and their sign-in.")

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
    address: ClusterOption = None,
    config: ConfigOption = None,
) -> None:
    """Score every customer with the champion models and write them ranked by value at risk,
    with plain-language reasons for the top of the list (scoring.reasons_top_n)."""
    from features.sources import is_sql_url
    from serving.core.ranking import (
        check_output_path,
        score_partitions,
        score_population,
        write_scores,
    )
    from serving.score_store import ScoreStore

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
    models = champions(registry(), progress)
    # A folder that is not partitioned is refused before a cluster is started for it.
    parts = partitions(data, progress, settings) if address else None
    with cluster(address, progress) as client:
        if client is None:
            tables = read_tables(data, progress, settings).tables
            scored = score_population(tables, cutoff, models, settings, progress=progress)
        else:
            scored, checked = score_partitions(
                client, parts, cutoff, models, settings, progress=progress
            )
            typer.echo(checked.summary(), err=True)
    write_scores(scored.ranked, out)
    progress(f"ranked list of {len(scored.ranked):,} customers -> {out}")
    folder = ScoreStore(snapshot_dir).save(scored)
    progress(f"scored list -> {folder}")
    _print_top(scored.ranked, out, folder)


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


# --------------------------------------------------------------------------- serve


@app.command()
@handle_errors(NoChampionError, ValueError, FileNotFoundError)
def serve(
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="Port to listen on (default: service.port).", show_default=False
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            envvar="RETAIN_DATA_DIR",  # serving.http.environment.ENV_DATA
            help="Folder holding the scored snapshot (`retain score` writes <folder>/scores/); "
            "without it only feature records can be scored.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            envvar="RETAIN_API_KEY_FILE",  # serving.http.keys.KEY_FILE_ENV
            help="Where the API key is kept when RETAIN_API_KEYS is not set "
            "(default: ~/.config/retain/api_key).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes (default: service.workers); each holds the models, the "
            "scored list and the history, and they share the store.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Start the HTTP service (BentoML): POST /score, /at_risk, /events, /feedback and the case
    routes (/cases/...) with an API key, /healthz and /readyz without. Checks the champion models
    first; keys come from RETAIN_API_KEYS, else from a key file created on first use (the key is
    printed that once). Ingestion and cases need --data to hold the contract tables."""
    import os
    import sys

    from model.registry import Registry, absolute_uri
    from serving.http.environment import (
        ENV_CONFIG,
        ENV_DATA,
        ENV_KEYS,
        ENV_TRACKING,
        ENV_WORKERS,
    )
    from serving.http.guard import parse_api_keys
    from serving.http.keys import default_key_file, resolve_api_key
    from serving.score_store import ScoreStore

    settings = settings_from(config)
    port = settings.service.port if port is None else port
    workers = settings.service.workers if workers is None else workers
    progress = Progress()
    uri = absolute_uri(registry().uri)
    progress(f"checking the champion models in {uri}")
    champions(Registry(uri), progress)  # checked here, so a missing one stops before the server
    if data is not None:
        if not data.is_dir():
            raise FileNotFoundError(f"--data {data}: no such folder")
        data = data.resolve()
        store = ScoreStore(data)
        if not store.pointer.is_file():
            typer.echo(
                f"warning: no scored list under {store.folder}: /score by customer id and "
                f"/at_risk will answer 404 until you run `retain score --data {data} --as-of "
                "DATE --out FILE` (feature records can be scored meanwhile)",
                err=True,
            )
    else:
        typer.echo(
            "warning: no --data folder: only feature records can be scored; /score by customer "
            "id and /at_risk need the folder `retain score` wrote its snapshot into",
            err=True,
        )

    keys = parse_api_keys(os.environ.get(ENV_KEYS))
    base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0', '::') else host}:{port}"
    if keys:
        typer.echo(f"API keys: {len(keys)} from {ENV_KEYS}")
        header = "Authorization: Bearer $KEY"
    else:
        path = (key_file or default_key_file()).expanduser().resolve()
        key, created = resolve_api_key(path)
        keys = (key,)
        if created:
            typer.echo(f"API key (created now and shown only this once; kept in {path}):")
            typer.echo(f"  {key}")
        else:
            typer.echo(f"API key: the one kept in {path} (not shown again)")
        header = f"Authorization: Bearer $(cat {path})"
    typer.echo(
        f"Retain service on {base} (health: {base}/readyz, no key needed), "
        f"{workers} worker{'s' if workers > 1 else ''}."
    )
    if data is not None:
        typer.echo(
            f"CX workspace: {base}/ui (sign in with a token from `retain users add NAME --role "
            f"agent|lead --data {data}`)"
        )
    typer.echo("Try:")
    typer.echo(
        f'  curl -s -X POST {base}/at_risk -H "{header}" '
        "-H 'Content-Type: application/json' -d '{\"n\": 5}'"
    )

    env = dict(os.environ)
    env.update({ENV_TRACKING: uri, ENV_KEYS: ",".join(keys)})
    env.pop(ENV_DATA, None)
    env.pop(ENV_CONFIG, None)
    if data is not None:
        env[ENV_DATA] = str(data)
    if config is not None:
        env[ENV_CONFIG] = str(config.resolve())
    env[ENV_WORKERS] = str(workers)
    # One OpenMP thread per prediction: a request scores a few rows, and idle OpenMP threads
    # spinning at a barrier cost more than they save (8 ms instead of 0.1 ms per booster).
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bentoml", "serve", "serving.http.service:RetainService"]
    command += ["--port", str(port), "--host", host, "--working-dir", str(root)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
