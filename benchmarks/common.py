"""What every benchmark shares: the machine line, peak memory, and cached synthetic worlds."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project root goes first: benchmarks/features.py, training.py and monitoring.py share their
# names with the project's packages, and a script's own folder is first on the path.
if str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gib:.1f} GiB RAM, {platform.processor() or platform.machine()}, Python {platform.python_version()}"


def machine_info() -> dict[str, object]:
    """The machine as a JSON-friendly dict, with the load when the benchmark started."""
    import psutil

    return {
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def ensure_world(customers: int, seed: int) -> Path:
    from features.synthetic import generate_world, write_world

    folder = ROOT / "benchmarks" / ".cache" / f"world_{customers}_{seed}"
    if (folder / "events.parquet").exists():
        return folder
    start = time.perf_counter()
    world = generate_world(
        customers, seed, progress=lambda m: print(f"  generate: {m}", flush=True)
    )
    write_world(world, folder)
    sizes = {k: len(v) for k, v in world.items()}
    print(f"generated world in {time.perf_counter() - start:.1f} s: {sizes}", flush=True)
    return folder


def duckdb_reference(events: str | Path, feedback: str | Path, as_of: str) -> float:
    """Seconds DuckDB takes for five per-customer aggregations (event count, spend, latest
    event, complaints, mean survey score) before `as_of` over Parquet `events` and `feedback`
    (a file or a glob), warm: the scale reference the feature benchmarks divide by."""
    import duckdb

    con = duckdb.connect()
    cutoff = f"TIMESTAMPTZ '{as_of} 00:00:00+00'"
    query = f"""
        WITH e AS (
            SELECT customer_id, count(*) AS n_events, sum(amount) AS spend, max(ts) AS last_ts,
                   count(*) FILTER (WHERE event_type = 'complaint') AS complaints
            FROM read_parquet('{events}') WHERE CAST(ts AS TIMESTAMPTZ) < {cutoff} GROUP BY customer_id),
        f AS (SELECT customer_id, avg(score) AS mean_score FROM read_parquet('{feedback}')
              WHERE CAST(ts AS TIMESTAMPTZ) < {cutoff} GROUP BY customer_id)
        SELECT count(*) FROM e FULL OUTER JOIN f USING (customer_id)
    """
    con.execute(query).fetchall()  # warm the file cache and the planner
    start = time.perf_counter()
    con.execute(query).fetchall()
    return time.perf_counter() - start
