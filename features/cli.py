"""`retain generate | validate | import | partition | features`: the data commands. The CLI reads and writes;
the functions it calls compute."""

from __future__ import annotations

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
    settings_from,
)
from features.contract import ContractError

app = typer.Typer()


def _quarantine_dir(data: str, quarantine: Path | None) -> Path:
    from features.sources import is_sql_url

    if quarantine is not None:
        return quarantine
    return Path("quarantine") if is_sql_url(data) else Path(data) / "quarantine"


def _write_quarantine(result, folder: Path, progress: Progress) -> None:
    from features.sources import write_frame

    for name, frame in result.quarantine.items():
        target = folder / f"{name}.parquet"
        if len(frame):
            write_frame(frame, target)
            progress(f"quarantined {len(frame):,} {name} rows -> {target}")
        elif target.exists():
            target.unlink()  # a stale file would claim rows that are no longer quarantined


@app.command()
@handle_errors(ContractError, ValueError)
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the contract tables to.")],
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    start: Annotated[
        str, typer.Option(help="First day of the simulated period (UTC).")
    ] = "2024-01-01",
    days: Annotated[
        int, typer.Option(min=120, help="Length of the simulated period in days.")
    ] = 730,
    drift: Annotated[
        bool, typer.Option(help="Shift behaviour in the last months (for monitoring).")
    ] = False,
    loop: Annotated[
        bool,
        typer.Option(
            help="Simulate the closed loop: negative moments, a holdout, recovery cases and a "
            "known contact effect, written to OUT/store/retain.db and OUT/loop_truth.json."
        ),
    ] = False,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Write a partitioned folder of N parts (as `retain partition` does), generated "
            "--chunk customers at a time: a world of any size in the memory of one chunk.",
        ),
    ] = None,
    chunk: Annotated[
        int,
        typer.Option(min=1, help="Customers per generated piece with --partitions."),
    ] = 250_000,
    config: ConfigOption = None,
) -> None:
    """Write a synthetic CX world (customers, events, feedback, churn) to OUT."""
    import json

    import pandas as pd

    from features.synthetic import generate_partitioned, generate_world, write_world
    from features.synthetic_loop import LoopSimulation, write_loop
    from store import STORE_FILE, Store, home_for

    settings = settings_from(config)
    progress = Progress()
    if partitions is not None:
        if loop:
            raise ValueError(
                "--loop simulates one store for the whole world; it cannot be combined with "
                "--partitions (generate the loop world unpartitioned)"
            )
        progress(
            f"generating {customers:,} customers over {days} days from {start} (seed {seed}"
            f"{', drift' if drift else ''}) into {partitions} partitions, {chunk:,} at a time"
        )
        manifest = generate_partitioned(
            customers,
            seed,
            out,
            partitions,
            chunk=chunk,
            start=start,
            days=days,
            drift=drift,
            progress=progress,
        )
        for name in manifest.tables:
            progress(f"{name:<10} {sum(manifest.rows[name]):>12,} rows -> {out / name}")
        return
    progress(
        f"generating {customers:,} customers over {days} days from {start} (seed {seed}"
        f"{', drift' if drift else ''}{', with the closed loop' if loop else ''})"
    )
    sim = LoopSimulation(settings.horizon_days, settings.loop.holdout_share) if loop else None
    world = generate_world(
        customers, seed, start=start, days=days, drift=drift, loop=sim, progress=progress
    )
    paths = write_world(world, out)
    for name, path in paths.items():
        progress(f"{name:<10} {len(world[name]):>12,} rows -> {path}")
    if sim is not None:
        db_path = home_for(out) / STORE_FILE
        if db_path.exists():
            db_path.unlink()  # the same seed gives the same world: the store is rewritten too
        with Store(f"sqlite:///{db_path.resolve()}") as db:
            write_loop(
                sim, db, world["customers"]["customer_id"].to_numpy(), pd.Timestamp(start, tz="UTC")
            )
        (Path(out) / "loop_truth.json").write_text(json.dumps(sim.truth, indent=2))
        progress(
            f"loop: {len(sim.moments):,} negative moments, {len(sim.cases):,} cases -> {db_path}; "
            f"true relative effect {sim.truth['relative_effect']:.3f} -> {Path(out) / 'loop_truth.json'}"
        )


@app.command("validate")
@handle_errors(ContractError)
def validate_cmd(
    data: DataOption,
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where to write quarantined rows (default: DATA/quarantine, or ./quarantine for SQL)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check a source against the data contract and write quarantined rows with their reasons."""
    settings = settings_from(config)
    progress = Progress()
    result = read_tables(data, progress, settings)
    _write_quarantine(result, _quarantine_dir(data, quarantine), progress)


@app.command("import")
@handle_errors(ContractError, ValueError)
def import_cmd(
    mapping: Annotated[Path, typer.Option(help="Import mapping YAML (see configs/mappings/).")],
    source: Annotated[Path, typer.Option(help="The export file, or a folder holding exactly one.")],
    out: Annotated[Path, typer.Option(help="Folder to write contract tables to.")],
    config: ConfigOption = None,
) -> None:
    """Turn a foreign export into contract tables using a mapping file, and validate them."""
    from features.mapping import apply_mapping, load_mapping, read_export
    from features.sources import write_tables
    from features.validate import validate

    settings_from(config)
    progress = Progress()
    spec = load_mapping(mapping)
    progress(f"reading {source}")
    export = read_export(source, spec)
    progress(f"mapping {len(export):,} rows with {mapping}")
    raw = apply_mapping(export, spec)
    result = validate(raw)
    typer.echo(result.summary(), err=True)
    # The mapped tables are written whole: every later run re-validates and reports the same
    # quarantine, so nothing is lost between import and use.
    for name, path in write_tables(raw, out).items():
        progress(f"{name:<10} -> {path}")
    _write_quarantine(result, out / "quarantine", progress)


@app.command()
@handle_errors(ContractError, ValueError)
def partition(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="New (or empty) folder for the partitioned tables.")],
    parts: Annotated[
        int, typer.Option("--partitions", min=1, help="Number of partitions (hash of customer_id).")
    ],
    config: ConfigOption = None,
) -> None:
    """Write a source's contract tables as Parquet partitioned by a hash of customer_id, every
    table co-partitioned, with a manifest: what `--cluster` runs read. The rows are copied as
    they are; validation happens where they are used."""
    from features.partitioned import write_partitioned
    from features.sources import read_source

    settings_from(config)
    progress = Progress()
    progress(f"reading {data}")
    raw = read_source(data)
    manifest = write_partitioned(raw, out, parts, progress=progress)
    typer.echo(f"{manifest.partitions} partitions of {', '.join(manifest.tables)} -> {out}")


@app.command()
@handle_errors(ContractError)
def features(
    data: DataOption,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Cutoff (exclusive), e.g. 2025-06-30; UTC.")
    ],
    out: Annotated[Path, typer.Option(help="Output file, .parquet or .csv.")],
    address: ClusterOption = None,
    config: ConfigOption = None,
) -> None:
    """Build one row of features per customer in the population at AS_OF."""
    from features.build import build_features
    from features.distributed import build_features_on
    from features.sources import write_frame

    settings = settings_from(config)
    cutoff = parse_cutoff(as_of)
    progress = Progress()
    # A folder that is not partitioned is refused before a cluster is started for it.
    parts = partitions(data, progress, settings) if address else None
    with cluster(address, progress) as client:
        if client is None:
            tables = read_tables(data, progress, settings).tables
            progress(f"building features as of {cutoff:%Y-%m-%d %H:%M} UTC")
            frame = build_features(tables, cutoff, settings)
            del tables  # the history is not needed to write the features, and it is large
        else:
            progress(f"building features as of {cutoff:%Y-%m-%d %H:%M} UTC per partition")
            frame, checked = build_features_on(client, parts, cutoff, settings, progress=progress)
            typer.echo(checked.summary(), err=True)
    write_frame(frame, out, index=True)
    progress(f"{len(frame):,} customers x {frame.shape[1]} features -> {out}")
