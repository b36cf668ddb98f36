"""Workspace benchmark: the CX workspace's pages over HTTP on a book of about 1M scored customers.

Set-up, cached in benchmarks/.cache/ (ignored by git): a world of `--customers` (default 1.7M
signed up, about 1.0M active and scored at 2026-01-01, like `benchmarks/monitoring.py`), the
champions of `benchmarks/scoring.py` (trained on 20,000 customers of the same generator),
`retain score --as-of 2026-01-01` into a data folder of its own, and one lead added with
`retain users add`. Then `retain serve --data` (one worker, as shipped) is started and signed in
to, and each page is requested `--requests` times by one client, after a warm-up that builds the
list's index (once per scored list) and its sort orders:

- the at-risk list, first page (the ranked order itself);
- the at-risk list filtered (a tier, a segment, a minimum value at risk) and sorted by churn
  probability, on a page in the middle;
- a customer id prefix search;
- the customer page of random scored customers (scores, trend, drivers from TreeSHAP on the
  customer's row, the timeline from the in-memory history, cases and contacts from the store).

Times are wall-clock over HTTP on the loopback (the server's time plus a fraction of a
millisecond), p50 / p95 / max. References measured in the same run: BentoML's own `/readyz` on
the same server (the floor of any answer from this stack), and a DuckDB query doing the list's
work on the same scored list (filter, order, limit 50 over the Parquet file).
Targets: the at-risk pages at most 300 ms p95, the customer page at most 200 ms p95.

    .venv/bin/python benchmarks/ui.py [--customers 1700000] [--requests 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, ensure_world, machine_info
from scoring import _free_port, _start, _stop, service_world

sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))

AS_OF = "2026-01-01"
CACHE = ROOT / "benchmarks" / ".cache"
RETAIN = str(Path(sys.executable).with_name("retain"))
TARGETS_MS = {"at-risk first page": 300, "at-risk filtered": 300, "id search": 300, "customer": 200}


def scored_folder(customers: int, seed: int, uri: str) -> Path:
    """A data folder with the world's tables (linked) and `retain score`'s list at AS_OF."""
    world = ensure_world(customers, seed)
    data = CACHE / f"ui_{customers}_{seed}" / "data"
    if (data / "scores" / "LATEST").exists():
        return data
    data.mkdir(parents=True, exist_ok=True)
    for f in world.glob("*.parquet"):
        link = data / f.name
        if not link.exists():
            os.symlink(f, link)
    start = time.perf_counter()
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    out = data.parent / "at_risk.csv"
    subprocess.run(
        [RETAIN, "score", "--data", str(data), "--as-of", AS_OF, "--out", str(out)],
        env=env,
        check=True,
    )
    print(f"retain score: {time.perf_counter() - start:.1f} s", flush=True)
    return data


def timed(client, path: str, params=None, n: int = 1) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path, params=params)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{path} {params}: {r.status_code} {r.text[:300]}")
    return out


def summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(a),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "max_ms": float(a.max()),
    }


def duckdb_reference(scores: Path, tier: str, segment: str, min_value: float, n: int) -> dict:
    import duckdb

    con = duckdb.connect()
    query = (
        "SELECT * FROM read_parquet(?) WHERE tier = ? AND segment = ? AND value_at_risk >= ? "
        "ORDER BY churn_probability DESC LIMIT 50 OFFSET 500"
    )
    con.execute(query, [str(scores), tier, segment, min_value]).fetchall()  # warm the cache
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        con.execute(query, [str(scores), tier, segment, min_value]).fetchall()
        ms.append((time.perf_counter() - t) * 1000)
    return summary(ms)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_700_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import httpx
    import pandas as pd

    info = machine_info()
    print(
        f"machine: {info['cores_logical']} cores, {info['memory_gib']} GiB RAM, "
        f"Python {info['python']}, load average {info['load_average_1m']}",
        flush=True,
    )
    _, uri, _ = service_world(20_000, 1)
    data = scored_folder(args.customers, args.seed, uri)
    name = (data / "scores" / "LATEST").read_text().strip()
    scores_file = data / "scores" / name / "scores.parquet"
    ranked = pd.read_parquet(scores_file, columns=["customer_id", "tier", "segment"])
    print(f"scored list of {name}: {len(ranked):,} customers", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="retain-ui-"))
    store_url = f"sqlite:///{tmp / 'store.db'}"
    env = os.environ | {
        "MLFLOW_TRACKING_URI": uri,
        "RETAIN_API_KEYS": "ui-key",
        "RETAIN_STORE_URL": store_url,
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
    }
    added = subprocess.run(
        [RETAIN, "users", "add", "lee", "--role", "lead", "--data", str(data)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    token = re.search(r"^\s+(\S{30,})$", added, re.M).group(1)
    port = _free_port()
    proc, started = _start(
        [RETAIN, "serve", "--port", str(port), "--data", str(data)],
        env,
        tmp / "service.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    url = f"http://127.0.0.1:{port}"
    print(f"service ready in {started:.1f} s", flush=True)
    rng = random.Random(0)
    results: dict[str, object] = {"machine": info, "customers": len(ranked)}
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            page = client.get("/ui/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            signed = client.post("/ui/signin", data={"csrf": csrf, "token": token})
            assert signed.status_code == 303, signed.text
            t = time.perf_counter()
            timed(client, "/ui/at-risk")
            first_build = time.perf_counter() - t
            print(f"first at-risk page (builds the index): {first_build:.1f} s", flush=True)
            tier = "medium"
            segment = ranked["segment"].value_counts().index[0]
            filtered = {
                "tier": tier,
                "segment": segment,
                "min_value": "5",
                "sort": "churn_probability",
                "page": "10",
            }
            timed(client, "/ui/at-risk", filtered)  # builds this sort order once
            ids = ranked["customer_id"].astype(str).to_numpy()
            picks = [ids[rng.randrange(len(ids))] for _ in range(args.requests)]
            timed(client, f"/ui/customers/{picks[0]}", n=3)
            time.sleep(5)  # the trend's background read of past lists
            pages = {
                "at-risk first page": timed(client, "/ui/at-risk", n=args.requests),
                "at-risk filtered": timed(client, "/ui/at-risk", filtered, n=args.requests),
                "id search": [
                    timed(client, "/ui/at-risk", {"q": ids[rng.randrange(len(ids))][:-2]})[0]
                    for _ in range(args.requests)
                ],
                "customer": [timed(client, f"/ui/customers/{c}")[0] for c in picks],
                "reference: /readyz": timed(client, "/readyz", n=args.requests),
            }
    finally:
        _stop(proc)
    ref = duckdb_reference(scores_file, tier, segment, 5.0, args.requests)
    print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target", flush=True)
    stats = {k: summary(v) for k, v in pages.items()}
    stats["reference: DuckDB filter+sort+page"] = ref
    for k, s in stats.items():
        target = TARGETS_MS.get(k)
        verdict = (
            ""
            if target is None
            else (f"p95 <= {target}: {'met' if s['p95_ms'] <= target else 'MISSED'}")
        )
        print(f"{k:<22} {s['p50_ms']:8.1f} {s['p95_ms']:8.1f} {s['max_ms']:8.1f}  {verdict}")
    floor = stats["reference: /readyz"]["p50_ms"]
    duck = ref["p50_ms"]
    print(
        f"ratios (p50): filtered page / DuckDB {stats['at-risk filtered']['p50_ms'] / duck:.1f}x, "
        f"first page / readyz {stats['at-risk first page']['p50_ms'] / floor:.1f}x, "
        f"customer / readyz {stats['customer']['p50_ms'] / floor:.1f}x",
        flush=True,
    )
    results.update(stats=stats, index_build_s=first_build, service_start_s=started)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
