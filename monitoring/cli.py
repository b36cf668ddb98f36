"""`retain monitor | retrain`: the monitoring reports with the retrain trigger, and a guarded retrain.

`retain monitor` compares the current scored snapshot (scored now when there is none for
`--as-of`) with the champion's reference (the evaluation snapshot logged with its training run),
measures matured performance on past snapshots, CX KPIs and the outreach effect, writes the
reports into `--out`, logs them to the MLflow experiment `monitoring.experiment`, and exits 3
when a retrain is due (0 otherwise), so a scheduler can chain `retain retrain` on it.

`retain retrain` runs `training.run.train_and_register` (features rebuilt, promotion gate
applied) under a lock file, so two scheduled retrains never overlap. The champion aliases only
move at the end of a successful run, so a failed retrain leaves the current champion serving.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from configs.cli import ConfigOption, Progress, handle_errors, parse_cutoff, settings_from
from features.contract import ContractError
from serving.scoring import NoChampionError

app = typer.Typer()

EXIT_RETRAIN_DUE = 3
EXIT_LOCKED = 4
LOCK_NAME = ".retain-retrain.lock"
# Matured scoring dates labelled for performance (one pass of build_labels each).
MATURED_DATES = 6
REFERENCE = "reference"


# --------------------------------------------------------------------------- inputs


def champion_reference(client, version: str) -> tuple[pd.DataFrame, pd.DataFrame, dict, str]:
    """(features, predictions, metrics, run_id) of the training run of churn `version`: the
    `reference/` artifacts logged by `training.run` and the run's metrics (the promised ones)."""
    import mlflow

    run_id = client.get_model_version("churn", version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=REFERENCE, dst_path=tmp
                )
            )
            features = pd.read_parquet(folder / "features.parquet")
            predictions = pd.read_parquet(folder / "predictions.parquet")
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise ValueError(
                f"the champion churn v{version} (run {run_id}) has no readable monitoring "
                f"reference ({REFERENCE}/features.parquet and {REFERENCE}/predictions.parquet): "
                f"{exc}. Train it with `retain train` (which logs the reference), or promote "
                "a version trained that way."
            ) from None
    metrics = dict(client.get_run(run_id).data.metrics)
    return features, predictions, metrics, run_id


def current_snapshot(data: str, cutoff, load, settings, champions, progress):
    """(scores, features, tables) of the snapshot for `cutoff`: the latest saved one when it is
    for `cutoff` (tables None: not loaded yet), else the population scored now from `load()`'s
    tables and saved as the new snapshot."""
    from features.build import build_features
    from serving.batch import load_latest_snapshot, rank_features, save_snapshot

    try:
        as_of, scores, features = load_latest_snapshot(data)
    except FileNotFoundError:
        as_of = None
    if as_of is not None and as_of == cutoff:
        progress(f"current scores: the saved snapshot of {as_of:%Y-%m-%d}")
        return scores, features, None
    progress(f"no saved snapshot for {cutoff:%Y-%m-%d}: scoring the population now")
    tables = load()
    features = build_features(tables, cutoff, settings)
    scores = rank_features(features, champions, settings, progress=progress)
    folder = save_snapshot(data, cutoff, scores, features)
    progress(f"scored snapshot -> {folder}")
    return scores, features, tables


def _snapshots_before(data: str, cutoff) -> list[tuple[pd.Timestamp, Path, int]]:
    """(as_of, folder, rows) of every saved snapshot under `<data>/scores/` made before `cutoff`,
    oldest first, from their metadata only."""
    import pyarrow.parquet as pq

    from features.contract import to_utc
    from serving.batch import SNAPSHOT_FOLDER

    found = []
    for meta_path in sorted((Path(data) / SNAPSHOT_FOLDER).glob("*/snapshot.json")):
        try:
            meta = json.loads(meta_path.read_text())
            as_of = to_utc(meta["as_of"])
            if as_of >= cutoff:
                continue
            rows = meta.get("customers")
            if not isinstance(rows, int):
                rows = pq.read_metadata(meta_path.parent / "scores.parquet").num_rows
        except (OSError, ValueError, KeyError):
            continue  # a half-written or foreign folder is not a snapshot
        found.append((as_of, meta_path.parent, rows))
    return sorted(found, key=lambda item: item[0])


def past_scores(
    data: str, cutoff, horizon_days: int, kpi_windows_days: Iterable[int] = ()
) -> tuple[pd.DataFrame | None, int]:
    """The past scores monitoring needs, stacked with an `as_of` column (only the columns it
    uses), or None when there are none; and how many scores made before `cutoff` have not
    matured yet (counted from the snapshots' metadata, not read).

    Only some snapshots are read, so a daily scoring history of a million customers per day
    costs the same as a short one: the latest `MATURED_DATES` whose horizon has matured (matured
    performance), and the latest at or before each KPI window's start (its impact groups)."""
    snapshots = _snapshots_before(data, cutoff)
    horizon = pd.Timedelta(days=horizon_days)
    matured = [s for s in snapshots if s[0] + horizon <= cutoff]
    wanted = {s[0] for s in matured[-MATURED_DATES:]}
    for days in kpi_windows_days:
        start = cutoff - pd.Timedelta(days=days)
        before = [s[0] for s in snapshots if s[0] <= start]
        if before:
            wanted.add(before[-1])
    pending = sum(rows for as_of, _, rows in snapshots if as_of + horizon > cutoff)
    parts = []
    for as_of, folder, _ in snapshots:
        if as_of not in wanted:
            continue
        try:
            scores = pd.read_parquet(
                folder / "scores.parquet", columns=["customer_id", "churn_probability", "clv"]
            )
        except (OSError, ValueError, KeyError):
            continue
        parts.append(scores.assign(as_of=as_of))
    if not parts:
        return None, pending
    stacked = pd.concat(parts, ignore_index=True)
    return stacked[["as_of", "customer_id", "churn_probability", "clv"]], pending


def _for_performance(past: pd.DataFrame | None, cutoff, horizon_days: int) -> pd.DataFrame:
    """The past scores of the latest `MATURED_DATES` matured dates."""
    if past is None:
        return pd.DataFrame(
            {
                "as_of": pd.Series([], dtype="datetime64[ns, UTC]"),
                "customer_id": pd.Series([], dtype=object),
                "churn_probability": pd.Series([], dtype=float),
                "clv": pd.Series([], dtype=float),
            }
        )
    matured = past["as_of"] + pd.Timedelta(days=horizon_days) <= cutoff
    keep = sorted(past.loc[matured, "as_of"].unique())[-MATURED_DATES:]
    return past[past["as_of"].isin(keep)].reset_index(drop=True)


def _finite(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- monitor


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
    config: ConfigOption = None,
) -> None:
    """Drift, matured performance, CX KPIs and the outreach effect against the champion; exit
    status 3 when a retrain is due, 0 otherwise."""
    import mlflow

    from features.cli import load_tables
    from features.sources import is_sql_url
    from monitoring.drift import detect_drift, write_html
    from monitoring.effect import outreach_effect
    from monitoring.kpis import cx_kpis
    from monitoring.outcomes import matured_labels
    from monitoring.performance import OK, matured_performance
    from monitoring.report import build_summary, render_report, save_report
    from serving.outreach import NoOutboxError, outbox_url_for, read_outbox
    from serving.scoring import load_champions
    from training.registry import connect, ensure_experiment, tracking_uri

    settings = settings_from(config)
    m = settings.monitoring
    horizon = settings.horizon_days
    events = tuple(settings.activity_event_types)
    cutoff = parse_cutoff(as_of)
    if is_sql_url(data):
        raise typer.BadParameter(
            "monitoring keeps its scored snapshots in the data folder; give a folder",
            param_hint="--data",
        )
    progress = Progress()

    progress("loading the champion models from the MLflow registry")
    champions = load_champions()
    progress(f"champion models: churn v{champions.churn_version}, clv v{champions.clv_version}")
    client = connect()
    ref_features, ref_predictions, promised, ref_run = champion_reference(
        client, champions.churn_version
    )
    progress(f"reference: {len(ref_features):,} rows from run {ref_run}")
    scores, features, tables = current_snapshot(
        data, cutoff, lambda: load_tables(data, progress).tables, settings, champions, progress
    )

    progress(f"drift of {len(features):,} current rows against the reference")
    current_predictions = scores.set_index("customer_id")[["churn_probability", "clv"]]
    drift = detect_drift(ref_features, features, ref_predictions, current_predictions, m)
    out.mkdir(parents=True, exist_ok=True)
    # Evidently's drift report is the slowest step (about 40 s for 50,000 rows a side on two
    # cores) and needs only the samples: a second process writes it while this one reads the
    # tables (when the snapshot was saved) and measures the rest.
    # (A Pool, not an executor: leaving the block on an error terminates the worker at once.)
    with get_context("spawn").Pool(1) as pool:
        drift_html = pool.apply_async(write_html, (drift, out / "drift.html"))
        progress("Evidently drift report: being written by a second process")
        if tables is None:
            tables = load_tables(data, progress).tables

        past, pending = past_scores(data, cutoff, horizon, m.kpi_windows_days)
        perf_scores = _for_performance(past, cutoff, horizon)
        progress(
            f"matured performance on {perf_scores['as_of'].nunique()} matured past snapshots "
            f"({pending:,} later scores not matured yet)"
        )
        labels = matured_labels(
            perf_scores, tables, cutoff, horizon, activity_event_types=events, last=MATURED_DATES
        )
        performance = matured_performance(
            perf_scores, labels, cutoff, horizon, promised, m, pending_elsewhere=pending
        )

        progress("CX KPIs")
        kpis = cx_kpis(tables, scores, cutoff, m, activity_event_types=events, past_scores=past)

        effect = None
        try:
            history = read_outbox(outbox_url_for(settings, data))
        except NoOutboxError:
            progress("no outreach outbox yet: no outreach effect")
        else:
            progress(f"outreach effect from {len(history):,} outbox rows")
            history = history[history["as_of"] < cutoff] if len(history) else history
            out_labels = matured_labels(
                history, tables, cutoff, horizon, activity_event_types=events
            )
            effect = outreach_effect(history, out_labels, cutoff, horizon, m)

        summary = build_summary(
            cutoff, drift=drift, performance=performance, effect=effect, settings=m
        )
        summary["champion_versions"] = {
            "churn": champions.churn_version,
            "clv": champions.clv_version,
        }
        summary["reference_run_id"] = ref_run

        progress(f"writing reports to {out}: performance (Evidently), KPIs and outreach effect")
        written = []
        if performance.status == OK:
            perf_ref = ref_predictions
            needed = {"churned", "churn_probability", "future_value", "clv"}
            written.append(
                performance.save_html(
                    out / "performance.html",
                    reference=perf_ref if needed <= set(perf_ref.columns) else None,
                    settings=m,
                )
            )
        page = render_report(
            summary, kpis=kpis, effect=effect, performance=performance, drift=drift
        )
        written.append(save_report(out / "report.html", page))
        kpis.to_csv(out / "kpis.csv", index=False)
        written.append(out / "kpis.csv")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        written.append(out / "summary.json")
        progress("waiting for the Evidently drift report")
        written.insert(0, drift_html.get())

    progress(f"logging the run to the MLflow experiment {m.experiment}")
    experiment_id = ensure_experiment(client, m.experiment)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"monitor-{cutoff:%Y-%m-%d}"
    ) as run:
        metrics = {"drift_share": _finite(summary["drift_share"])}
        metrics.update({f"matured.{k}": _finite(v) for k, v in summary["matured_metrics"].items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        mlflow.set_tags(
            {
                "retrain_due": str(summary["retrain_due"]).lower(),
                "as_of": summary["as_of"],
                "champion.churn": champions.churn_version,
                "champion.clv": champions.clv_version,
                "retain.source": str(data),
            }
        )
        for path in written:
            mlflow.log_artifact(str(path))
        monitor_run = run.info.run_id

    typer.echo(f"reports:  {out.resolve()}")
    for path in written:
        typer.echo(f"  {path.name}")
    typer.echo(f"logged:   run {monitor_run} in experiment {m.experiment} ({tracking_uri()})")
    share = summary["drift_share"]
    typer.echo(
        "drift:    "
        + ("not measured" if share is None else f"{share:.0%} of tested columns")
        + f" (threshold {summary['drift_share_threshold']:.0%})"
    )
    typer.echo(f"matured:  {performance.message}")
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


# --------------------------------------------------------------------------- retrain


class LockHeldError(RuntimeError):
    """Another live process holds the retrain lock."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


@contextmanager
def retrain_lock(path: Path, warn=lambda _: None) -> Iterator[Path]:
    """Hold `path` (created exclusively, holding this pid) for the duration. A lock left by a
    process that is no longer alive is taken over (with `warn`); a live one raises
    `LockHeldError`."""
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text = path.read_text().strip()
            except OSError:
                text = ""
            pid = int(text) if text.isdigit() else -1
            if _pid_alive(pid) and attempt == 0:
                raise LockHeldError(
                    f"another retrain holds the lock {path} (pid {pid}); wait for it to finish, "
                    "or remove the file if that process is not a retrain"
                ) from None
            if attempt == 1:
                raise LockHeldError(f"could not take over the lock {path}") from None
            warn(
                f"warning: taking over the stale lock {path} "
                f"({'pid ' + str(pid) + ' is not running' if pid > 0 else 'no pid in it'})"
            )
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    try:
        yield path
    finally:
        try:
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()
        except OSError:
            pass


def _lock_path(data: str) -> Path:
    from features.sources import is_sql_url

    return Path(LOCK_NAME) if is_sql_url(data) else Path(data) / LOCK_NAME


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
    from training.cli import _print_report, train_data
    from training.registry import CHAMPION, MODEL_NAMES, alias_version, connect

    settings = settings_from(config)
    cutoff = parse_cutoff(as_of) if as_of else None
    progress = Progress()
    client = connect()
    before = {name: alias_version(client, name, CHAMPION) for name in MODEL_NAMES}
    serving = ", ".join(f"{n} v{v}" for n, v in before.items() if v is not None) or "none"
    lock = _lock_path(data)
    try:
        with retrain_lock(lock, warn=lambda msg: typer.echo(msg, err=True)):
            progress(f"holding the retrain lock {lock}; champions now: {serving}")
            try:
                report = train_data(data, settings, cutoff, progress)
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
    _print_report(report)
    if not any(report.promoted.values()):
        typer.echo(f"the gate kept the current champions serving ({serving})")
