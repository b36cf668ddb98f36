"""Feature pipeline benchmark: 1M customers / ~10M events / ~1M survey responses.

Prints the machine, the sizes, wall time and peak memory of each stage (read, validate,
build_features), and as a scale reference the time DuckDB takes for five aggregations per
customer on the same Parquet files (event count, sum of amount, latest ts, mean score, complaint
count). Stages run in a fresh child process so its peak RSS is the pipeline's own.

    .venv/bin/python benchmarks/features.py [--customers 1000000] [--seed 1]

The generated world is cached in benchmarks/.cache/ (ignored by git).
Targets (2 cores): build_features <= 60 s and <= 6 GB peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import duckdb_reference, ensure_world, machine, peak_rss_gib  # noqa: E402


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


if __name__ == "__main__":
    main()
