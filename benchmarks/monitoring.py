"""Monitoring benchmark: the daily `retain monitor` on 1M scored customers.

What a scheduler runs each morning, after that day's `retain score`: drift of the current
snapshot against the champion's reference (both sampled to `monitoring.sample_size`), matured
performance of past snapshots, CX KPIs over the whole population, the outreach effect, the
HTML reports (Evidently's drift and performance reports, the KPI and outreach report) and the
MLflow monitoring run. It is timed as cron would run it: `retain monitor` in a child process
(`--as-of` the end of the world, 2026-01-01), from start to exit, with the time of each stage
read from its progress lines and the child's peak memory.

Set-up, cached in benchmarks/.cache/monitoring_<customers>_<seed>/ (ignored by git), built once:

- the world: `--customers` (default 1.7M) customers with ~10 journey events and ~1 survey
  answer each (`common.ensure_world`); about 60% of them are active at the end of the two
  years, so 1.7M gives the ~1.0M scored customers the target is about. Its tables are linked into
  a data folder of its own, so scores and the outbox do not land in the shared cache;
- the champion: `training.run.train_and_register` on a world of `--train-customers` (default
  100,000, seed + 1) into a private MLflow store (cached on its own), so the reference (its evaluation snapshot,
  ~60k rows) is larger than the sample;
- a scoring history: every `--every` days (default 21) from `--history-start` (2025-07-01) the
  population is scored and saved as `retain score` does and an outreach run drops its contacts
  to a file, then the snapshot of 2026-01-01 itself. Monitoring reads only the snapshots it
  needs (the latest six matured, one per KPI window), so a daily history costs the same.

As a reference measured in the same run: reading what monitoring has to read anyway with
`pandas.read_parquet` (the contract tables and the current snapshot's scores and features),
the I/O floor of any monitor that looks at the whole population.

    .venv/bin/python benchmarks/monitoring.py [--customers 1000000] [--json out.json]
        [--trigger-seeds 0-9]

`--trigger-seeds` also runs the retrain-trigger check of `benchmarks/trigger.py` over that seed
range (worlds of 20,000 customers with and without `--drift`: every drifted one must exit 3 and
no healthy one), after the timing and in its own processes, so the two never share the cores.

Target (2 cores): the monitor run under 2 minutes, with the drift sample size it used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, ensure_world, machine, peak_rss_gib

AS_OF = "2026-01-01"
TABLES = ("customers", "events", "feedback", "churn")
TARGET_S = 120.0
CACHE = ROOT / "benchmarks" / ".cache"
STAGE = re.compile(r"^\[\s*([0-9.]+)s\] (.*)$")


def _log(message: str) -> None:
    print(f"  {message}", flush=True)


def ensure_champion(customers: int, seed: int) -> str:
    """A registry with `churn` and `clv` champions trained on their own world; its URI."""
    home = CACHE / f"monitoring_champion_{customers}_{seed}"
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    done = home / "mlruns" / "champion.json"
    if done.exists():
        return uri
    from configs import load_settings
    from features.sources import read_folder
    from features.validate import validate
    from model.registry import Registry
    from training.run import train_and_register

    shutil.rmtree(home / "mlruns", ignore_errors=True)
    (home / "mlruns").mkdir(parents=True)
    folder = ensure_world(customers, seed)
    tables = validate(read_folder(folder)).tables
    start = time.perf_counter()
    print(f"training the champion on {customers:,} customers ...", flush=True)
    report = train_and_register(
        tables,
        load_settings(),
        source=str(folder),
        config_text=(ROOT / "configs" / "default.yaml").read_text(),
        registry=Registry(uri),
        progress=_log,
    )
    if not all(report.promoted.values()):
        raise SystemExit(f"the benchmark champion was not promoted: {report.decisions}")
    done.write_text(
        json.dumps({"customers": customers, "seed": seed, "train_s": time.perf_counter() - start})
    )
    return uri


def ensure_history(home: Path, world: Path, uri: str, start: str, every: int) -> Path:
    """The data folder: the world's tables linked in, scored snapshots and outreach runs every
    `every` days from `start`, and the snapshot of AS_OF."""
    import pandas as pd

    data = home / "data"
    done = data / "history.json"
    wanted = {"start": start, "every": every, "as_of": AS_OF}
    if done.exists() and json.loads(done.read_text()) == wanted:
        return data
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    for name in TABLES:
        (data / f"{name}.parquet").symlink_to(world / f"{name}.parquet")

    os.environ["MLFLOW_TRACKING_URI"] = uri
    from configs import load_settings
    from features.build import build_features
    from features.contract import to_utc
    from features.sources import read_folder
    from features.validate import validate
    from model.registry import Registry
    from serving.core.champions import load_champions
    from serving.core.ranking import ScoredList, rank_features
    from serving.outreach.run import run_outreach
    from serving.score_store import ScoreStore

    settings = load_settings()
    champions = load_champions(Registry(uri))
    store = ScoreStore(data)
    tables = validate(read_folder(data)).tables
    dates = list(pd.date_range(start, AS_OF, freq=f"{every}D", tz="UTC", inclusive="left"))
    dates.append(pd.Timestamp(AS_OF, tz="UTC"))
    for i, as_of in enumerate(dates, start=1):
        t0 = time.perf_counter()
        features = build_features(tables, as_of, settings)
        scores = rank_features(features, champions, settings)
        store.save(ScoredList(to_utc(as_of), scores, features))
        report = run_outreach(scores, as_of, settings, data_dir=data, webhook_url="")
        _log(
            f"history {i}/{len(dates)}: {as_of:%Y-%m-%d} scored {len(scores):,}, outreach "
            f"{report.counts}, {time.perf_counter() - t0:.1f} s"
        )
    done.write_text(json.dumps(wanted))
    return data


def read_floor(data: Path) -> dict[str, float]:
    """Seconds to read the contract tables and the current snapshot with pandas."""
    import pandas as pd

    from serving.score_store import FOLDER, LATEST

    out = {}
    t0 = time.perf_counter()
    for name in TABLES:
        pd.read_parquet(data / f"{name}.parquet")
    out["tables_s"] = time.perf_counter() - t0
    snapshot = data / FOLDER / (data / FOLDER / LATEST).read_text().strip()
    t1 = time.perf_counter()
    pd.read_parquet(snapshot / "scores.parquet")
    pd.read_parquet(snapshot / "features.parquet")
    out["snapshot_s"] = time.perf_counter() - t1
    out["total_s"] = out["tables_s"] + out["snapshot_s"]
    return out


def run_monitor(data: Path, uri: str, out: Path) -> dict[str, object]:
    """`retain monitor` in a child process: wall time, exit status, stages, peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [
        str(ROOT / ".venv" / "bin" / "retain"),
        "monitor",
        "--data",
        str(data),
        "--as-of",
        AS_OF,
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    child = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    # The only child this process waits for, so its peak is the monitor's own.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    stdout, stderr = child.stdout, child.stderr
    if child.returncode not in (0, 3):
        sys.stderr.write(stderr)
        raise SystemExit(f"retain monitor failed with exit status {child.returncode}")
    marks = [(float(m[1]), m[2]) for line in stderr.splitlines() if (m := STAGE.match(line))]
    stages = []
    for (at, what), (nxt, _) in zip(marks, [*marks[1:], (wall, "")], strict=True):
        stages.append({"stage": what, "started_s": at, "seconds": max(nxt - at, 0.0)})
    return {
        "wall_s": wall,
        "exit_status": child.returncode,
        "peak_rss_gib": peak,
        "stages": stages,
        "stdout": stdout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=1_700_000,
        help="customers ever signed up; about 60%% of them are scored on 2026-01-01",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-customers", type=int, default=100_000)
    parser.add_argument("--history-start", default="2025-07-01")
    parser.add_argument("--every", type=int, default=21, help="days between past scorings")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--trigger-seeds",
        help="also run benchmarks/trigger.py over this seed range (for example 0-9)",
    )
    args = parser.parse_args()

    import pandas as pd

    print(f"machine: {machine()}", flush=True)
    home = CACHE / f"monitoring_{args.customers}_{args.seed}"
    world = ensure_world(args.customers, args.seed)
    uri = ensure_champion(args.train_customers, args.seed + 1)
    data = ensure_history(home, world, uri, args.history_start, args.every)

    floor = read_floor(data)
    result = run_monitor(data, uri, home / "reports")
    summary = json.loads((home / "reports" / "summary.json").read_text())
    sizes = {
        name: len(pd.read_parquet(data / f"{name}.parquet", columns=["customer_id"]))
        for name in TABLES
    }
    snapshots = len(list((data / "scores").glob("*/snapshot.json")))
    current = data / "scores" / pd.Timestamp(AS_OF).strftime("%Y-%m-%d") / "snapshot.json"
    scored = json.loads(current.read_text())["customers"]

    print(f"sizes: {sizes}; {snapshots} scored snapshots (1 current)", flush=True)
    print(f"scored customers on {AS_OF}: {scored:,}", flush=True)
    print(
        f"drift sample: {summary.get('drift_n_reference'):,} reference and "
        f"{summary.get('drift_n_current'):,} current rows (monitoring.sample_size), "
        f"{summary.get('drift_columns_tested')} columns tested",
        flush=True,
    )
    print("monitor stages (s):", flush=True)
    for s in result["stages"]:
        print(f"  {s['seconds']:7.1f}  {s['stage']}", flush=True)
    wall = result["wall_s"]
    print(
        f"retain monitor: {wall:.1f} s (target < {TARGET_S:.0f} s: "
        f"{'met' if wall < TARGET_S else 'MISSED'}), exit status {result['exit_status']}, "
        f"retrain_due={summary['retrain_due']}, drift_share={summary['drift_share']}",
        flush=True,
    )
    print(
        f"reference: pandas.read_parquet of the tables and the current snapshot "
        f"{floor['total_s']:.1f} s; monitor / read floor = {wall / floor['total_s']:.1f}x",
        flush=True,
    )
    print(
        f"peak RSS: retain monitor {result['peak_rss_gib']:.2f} GiB "
        f"(the benchmark process, set-up included, {peak_rss_gib():.2f} GiB)",
        flush=True,
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "sizes": sizes,
                    "scored": scored,
                    "snapshots": snapshots,
                    "summary": {
                        k: summary.get(k)
                        for k in (
                            "drift_n_reference",
                            "drift_n_current",
                            "drift_columns_tested",
                            "drift_share",
                            "retrain_due",
                        )
                    },
                    "floor": floor,
                    **{k: v for k, v in result.items() if k != "stdout"},
                },
                indent=2,
            )
        )
    if args.trigger_seeds:
        trigger = Path(__file__).with_name("trigger.py")
        done = subprocess.run([sys.executable, str(trigger), "--seeds", args.trigger_seeds])
        if done.returncode:
            raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
