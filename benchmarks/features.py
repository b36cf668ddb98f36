"""Feature pipeline benchmark: the whole `retain features` command against DuckDB.

Prints the machine and the sizes, then
- the stages in a fresh child process (read, validate, build_features: wall time and peak RSS,
  and the in-memory size of the raw frames read);
- whole processes, alternating, best of `--repeat`: `retain features --data DIR --as-of D --out
  F.parquet` against a Python process running one DuckDB statement that computes a comparable
  per-customer feature set from the same Parquet files and writes it to Parquet
  (`common.duckdb_feature_sql`), each with its own peak RSS.

    .venv/bin/python benchmarks/features.py [--customers 1000000] [--seed 1] [--repeat 3]

The generated world is cached in benchmarks/.cache/ (ignored by git).
Targets (2 cores): the whole command at most 2x the DuckDB process, its peak RSS at most 3x the
raw frames; build_features <= 60 s and <= 6 GB peak at 1M customers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project root ahead of this folder: benchmarks/features.py, training.py and monitoring.py
# share their names with the project's packages (Dask's worker processes inherit this path).
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    duckdb_feature_command,
    duckdb_reference,
    ensure_world,
    machine,
    peak_rss_gib,
)

# Runs argv in a child and prints its wall time and peak RSS (kB): a fresh wrapper per command,
# because RUSAGE_CHILDREN keeps the largest child ever waited for.
MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(rc.returncode and rc.stderr.decode()[-2000:])"
)


def measured(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS GiB) of one whole process."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed:\n{proc.stderr}")
    seconds, kib = proc.stdout.split()
    return float(seconds), int(kib) / 2**20


def child(folder: Path, as_of: str) -> None:
    """Runs in a fresh process: read, validate, build features; prints one JSON line."""
    from configs import load_settings
    from features.build import build_features
    from features.sources import read_folder
    from features.validate import validate

    settings = load_settings()
    out: dict[str, float | int] = {}
    t0 = time.perf_counter()
    raw = read_folder(folder)
    t1 = time.perf_counter()
    raw_gib = sum(int(t.memory_usage(deep=True).sum()) for t in raw.values()) / 2**30
    tables = validate(raw).tables
    del raw
    t2 = time.perf_counter()
    rss_before_build = peak_rss_gib()
    frame = build_features(tables, as_of, settings)
    t3 = time.perf_counter()
    out.update(
        read_s=t1 - t0,
        validate_s=t2 - t1,
        build_s=t3 - t2,
        peak_rss_gib=peak_rss_gib(),
        peak_rss_before_build_gib=rss_before_build,
        raw_frames_gib=raw_gib,
        customers=len(tables.customers),
        events=len(tables.events),
        feedback=len(tables.feedback) if tables.feedback is not None else 0,
        population=len(frame),
        n_features=frame.shape[1],
    )
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--as-of", default="2025-12-01")
    parser.add_argument("--repeat", type=int, default=3, help="whole-process runs of each side")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.as_of)
        return

    print(f"machine: {machine()}")
    folder = ensure_world(args.customers, args.seed)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), "--as-of", args.as_of],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed:\n{proc.stderr}")
    result = json.loads(
        next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:]
    )
    duck = duckdb_reference(folder / "events.parquet", folder / "feedback.parquet", args.as_of)
    total = result["read_s"] + result["validate_s"] + result["build_s"]
    print(
        f"sizes: {result['customers']:,} customers, {result['events']:,} events, {result['feedback']:,} responses; "
        f"population at {args.as_of}: {result['population']:,} x {result['n_features']} features"
    )
    print(f"read            {result['read_s']:7.1f} s")
    print(f"validate        {result['validate_s']:7.1f} s")
    print(f"build_features  {result['build_s']:7.1f} s   (target <= 60 s)")
    print(f"total           {total:7.1f} s")
    print(
        f"peak RSS        {result['peak_rss_gib']:7.2f} GiB (target <= 6 GB; {result['peak_rss_before_build_gib']:.2f} GiB before build)"
    )
    print(
        f"duckdb 5 aggs   {duck:7.2f} s   build_features / duckdb = {result['build_s'] / duck:.1f}x, "
        f"total / duckdb = {total / duck:.1f}x"
    )

    import tempfile

    retain = str(Path(sys.executable).with_name("retain"))
    with tempfile.TemporaryDirectory() as tmp:
        ours = [retain, "features", "--data", str(folder), "--as-of", args.as_of]
        ours += ["--out", f"{tmp}/features.parquet"]
        theirs = duckdb_feature_command(folder, args.as_of, f"{tmp}/duckdb.parquet")
        runs: dict[str, list[tuple[float, float]]] = {"retain": [], "duckdb": []}
        for i in range(args.repeat):
            runs["retain"].append(measured(ours))
            runs["duckdb"].append(measured(theirs))
            print(
                f"  round {i + 1}: retain features {runs['retain'][-1][0]:.2f} s, "
                f"duckdb {runs['duckdb'][-1][0]:.2f} s",
                flush=True,
            )
        import pandas as pd

        width = (
            pd.read_parquet(f"{tmp}/features.parquet").shape,
            pd.read_parquet(f"{tmp}/duckdb.parquet").shape,
        )
    (ours_s, ours_gib), (duck_s, duck_gib) = min(runs["retain"]), min(runs["duckdb"])
    raw_gib = result["raw_frames_gib"]
    print(
        f"whole processes (best of {args.repeat}), output rows x columns {width[0]} / {width[1]}:"
    )
    print(f"retain features {ours_s:7.2f} s  peak {ours_gib:.2f} GiB")
    print(f"duckdb features {duck_s:7.2f} s  peak {duck_gib:.2f} GiB")
    print(
        f"ratio           {ours_s / duck_s:7.2f}x  (target <= 2x); peak / raw frames "
        f"({raw_gib * 1024:.0f} MiB) = {ours_gib / raw_gib:.2f}x (target <= 3x)"
    )


if __name__ == "__main__":
    main()
