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


def duckdb_feature_sql(
    folder: str | Path, as_of: str, out: str | Path, windows=(7, 30, 90, 365)
) -> str:
    """A DuckDB statement computing a per-customer feature set comparable to `build_features`'
    (the value, journey, feedback and timing families: counts and sums per window, per channel
    and per event type, days since each kind of event, active days, distinct channels, trends,
    unresolved complaints, per-survey last/mean/count/negatives, purchase-day gaps), over the
    population at `as_of` (signed up before it, not churned before it), written to Parquet
    `out`. Channels, event types and surveys are the contract's and the journey family's. Left
    out: VADER sentiment and categorical encodings, which SQL has no counterpart for; so the
    reference is a little light."""
    from features.contract import CHANNELS, SURVEYS
    from features.families.journey import OWNED_TYPES as JOURNEY_TYPES

    folder = Path(folder)
    cutoff = f"TIMESTAMPTZ '{as_of} 00:00:00+00'"
    # The contract's population: signed up before the cutoff and not churned before it.
    gone = (
        f"AND c.customer_id NOT IN (SELECT customer_id FROM read_parquet('{folder}/churn.parquet') "
        f"WHERE CAST(churn_date AS TIMESTAMPTZ) < {cutoff})"
        if (folder / "churn.parquet").exists()
        else ""
    )
    age = f"(epoch({cutoff}) - epoch(CAST(ts AS TIMESTAMPTZ))) / 86400.0"
    aggs: list[str] = []
    for w in (*windows, None):
        inside = "TRUE" if w is None else f"age <= {w}"
        tag = "total" if w is None else f"{w}d"
        aggs += [
            f"count(*) FILTER (WHERE {inside} AND event_type = 'purchase') AS purchases_{tag}",
            f"sum(amount) FILTER (WHERE {inside} AND event_type = 'purchase') AS spend_{tag}",
            f"count(*) FILTER (WHERE {inside} AND event_type = 'refund') AS refunds_{tag}",
            f"sum(abs(amount)) FILTER (WHERE {inside} AND event_type = 'refund') AS refund_amount_{tag}",
        ]
        if w is None:
            continue
        aggs.append(f"count(*) FILTER (WHERE {inside}) AS events_{tag}")
        aggs += [
            f"count(*) FILTER (WHERE {inside} AND channel = '{c}') AS events_{c}_{tag}"
            for c in CHANNELS
        ]
        aggs += [
            f"count(*) FILTER (WHERE {inside} AND event_type = '{t}') AS {t}_{tag}"
            for t in JOURNEY_TYPES
        ]
        aggs += [
            f"count(*) FILTER (WHERE {inside} AND event_type = 'complaint' AND NOT resolved) "
            f"AS unresolved_complaints_{tag}",
            f"count(DISTINCT floor(age)) FILTER (WHERE {inside}) AS active_days_{tag}",
        ]
    aggs += [
        f"min(age) FILTER (WHERE event_type = '{t}') AS days_since_last_{t}"
        for t in (*JOURNEY_TYPES, "purchase", "refund")
    ]
    aggs += [
        "min(age) AS days_since_last_event",
        f"count(DISTINCT channel) FILTER (WHERE age <= {max(windows)}) AS channels_used",
        "count(*) FILTER (WHERE age <= 30) AS recent_30",
        "count(*) FILTER (WHERE age > 30 AND age <= 60) AS earlier_30",
        "count(*) FILTER (WHERE event_type = 'purchase' AND age > 90 AND age <= 180) AS purchases_earlier_90d",
    ]
    fb = []
    for s in SURVEYS:
        fb += [
            f"arg_max(score, ts) FILTER (WHERE survey = '{s}') AS {s}_last",
            f"avg(score) FILTER (WHERE survey = '{s}') AS {s}_mean",
            f"count(*) FILTER (WHERE survey = '{s}') AS {s}_count",
        ]
    fb += [
        "count(*) FILTER (WHERE survey = 'nps' AND score <= 6) AS negative_responses_total",
        "min(age) FILTER (WHERE survey = 'nps' AND score <= 6) AS days_since_last_detractor",
        "min(age) AS days_since_last_response",
        "count(comment) AS comments_total",
    ]
    return f"""
    COPY (
    WITH ev AS (SELECT customer_id, channel, event_type, amount, resolved, {age} AS age
                FROM read_parquet('{folder}/events.parquet') WHERE CAST(ts AS TIMESTAMPTZ) < {cutoff}),
    e AS (SELECT customer_id, {", ".join(aggs)} FROM ev GROUP BY customer_id),
    f AS (SELECT customer_id, {", ".join(fb)}
          FROM (SELECT *, {age} AS age FROM read_parquet('{folder}/feedback.parquet')
                WHERE CAST(ts AS TIMESTAMPTZ) < {cutoff}) GROUP BY customer_id),
    days AS (SELECT DISTINCT customer_id, floor(age) AS d FROM ev WHERE event_type = 'purchase'),
    gaps AS (SELECT customer_id, d, lag(d) OVER (PARTITION BY customer_id ORDER BY d DESC) - d AS gap
             FROM days),
    t AS (SELECT customer_id, count(*) AS purchase_days_total, max(d) AS days_since_first_purchase,
                 avg(gap) AS gap_mean_days, stddev_samp(gap) AS gap_std_days, max(gap) AS gap_max_days,
                 min(d) / nullif(avg(gap), 0) AS overdue_ratio
          FROM gaps GROUP BY customer_id)
    SELECT c.customer_id, {age.replace("ts", "signup_date")} AS tenure_days, e.*, f.*, t.*,
           (recent_30 - earlier_30) / nullif(recent_30 + earlier_30, 0) AS engagement_trend_30d,
           (purchases_90d - purchases_earlier_90d) / nullif(purchases_90d + purchases_earlier_90d, 0)
               AS purchase_trend_90d
    FROM read_parquet('{folder}/customers.parquet') c
    LEFT JOIN e USING (customer_id) LEFT JOIN f USING (customer_id) LEFT JOIN t USING (customer_id)
    WHERE CAST(c.signup_date AS TIMESTAMPTZ) < {cutoff} {gone}
    ) TO '{out}' (FORMAT parquet)
    """


def duckdb_feature_command(folder: str | Path, as_of: str, out: str | Path) -> list[str]:
    """A whole process (Python start, `import duckdb`, the statement above) to time against the
    whole `retain features` command."""
    script = (
        "import sys, duckdb; sys.path.insert(0, sys.argv[1]); from common import duckdb_feature_sql; "
        "duckdb.connect().execute(duckdb_feature_sql(sys.argv[2], sys.argv[3], sys.argv[4]))"
    )
    return [sys.executable, "-c", script, str(ROOT / "benchmarks"), str(folder), as_of, str(out)]
