"""Real-time loop benchmark: `retain serve` over a big book ingesting negative moments.

The service (BentoML, one worker, the API key check) is started on a data folder holding a
synthetic world of `--customers` (default 1,000,000, about 10M events; cached in
benchmarks/.cache) with champions trained on a 20,000-customer world of the same generator
(`benchmarks/scoring.py`'s cached models), and an empty store. Measured:

- start-up: the time until /readyz answers (reading and validating the whole history, grouping
  it by customer) and the worker's resident memory after it, and again at the end;
- latency: one client sends detractor NPS answers (with a comment), one per request, on a
  fixed schedule of `--rate` rows/s (50) for `--latency-rows` rows, not waiting for earlier
  answers: the time from a row's scheduled send to its answer, which comes after the row was
  committed, its customer rescored and its case opened (or the moment held out or not
  qualified), i.e. ingest-to-case, queueing included. Targets: p50 <= 50 ms, p99 <= 250 ms;
- throughput: `--clients` (8) closed-loop clients send batches of 100 event rows (complaints,
  delivery issues, visits, purchases; one deliberately bad row per batch) for `--seconds`:
  rows per second, and the reconciliation rows sent = rows in the inbox + rows rejected (nothing
  lost), read back from the store. Target: >= 2,000 rows/s;
- the reference, in the same run: a bare FastAPI + uvicorn app taking the same batches and
  inserting them into SQLite in one transaction per request, no checks, no rescoring: the same
  clients' rows per second against it.

    .venv/bin/python benchmarks/realtime.py [--customers 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from fastapi import Request  # at module level: FastAPI resolves the handler's annotation here

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, ensure_world, machine_info
from scoring import _free_port, _start, _stop, service_world

# The project root first again (scoring.py put benchmarks/ first, and benchmarks/features.py and
# training.py share their names with the project's packages).
sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))

KEY = "realtime-key"
COMMENTS = (
    "Third late delivery in a row and nobody answers the phone.",
    "Support closed my ticket without fixing anything. Very disappointed.",
    "The app keeps logging me out and the invoice is wrong again.",
)


def serve_bare(port: int, db: str) -> None:
    """The reference: a bare FastAPI app that inserts each batch into SQLite, nothing else."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    lock = threading.Lock()
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, body TEXT)")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.post("/events")
    async def events(request: Request) -> dict:
        body = await request.json()
        rows = [(r["event_id"], json.dumps(r)) for r in body["rows"]]
        with lock:
            conn.execute("BEGIN")
            conn.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        return {"stored": len(rows)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def rss_gib(proc) -> tuple[float, float]:
    """Resident memory of the serve process tree: its largest process (a BentoML worker) and
    all of its processes together."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        sizes = [p.memory_info().rss / 2**30 for p in tree]
    except psutil.Error:
        return float("nan"), float("nan")
    return max(sizes), sum(sizes)


def latency(url: str, ids: list[str], n: int, rate: float, rng: random.Random) -> dict:
    """One client sending `n` detractor answers at `rate` rows/s on a fixed schedule (open
    loop: row i leaves at start + i / rate whether or not the earlier answers are back, as
    moments arrive in life); each row's latency runs from its scheduled time to its answer, so
    a service that falls behind shows it as queueing."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    rows = [
        {
            "event_id": f"lat-{i}",
            "customer_id": rng.choice(ids),
            "survey": "nps",
            "score": rng.randint(0, 4),
            "comment": rng.choice(COMMENTS),
        }
        for i in range(n)
    ]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60, limits=limits) as c:
        start = time.perf_counter()

        def send(i: int) -> tuple[float, list[str]]:
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            row = rows[i] | {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            r = c.post("/feedback", json={"rows": [row]})
            r.raise_for_status()
            return time.perf_counter() - due, [m["outcome"] for m in r.json()["moments"]]

        with ThreadPoolExecutor(max_workers=64) as pool:
            done = list(pool.map(send, range(n)))
        wall = time.perf_counter() - start
    outcomes: dict[str, int] = {}
    for _, found in done:
        for o in found:
            outcomes[o] = outcomes.get(o, 0) + 1
    ms = np.asarray([t for t, _ in done]) * 1e3
    return {
        "rows": n,
        "rate_target": rate,
        "rate_achieved": n / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "outcomes": outcomes,
    }


def throughput(url: str, ids: list[str], clients: int, seconds: float, tag: str) -> dict:
    import httpx

    kinds = ("complaint", "delivery_issue", "visit", "purchase", "visit")
    sent = [0] * clients
    stored = [0] * clients
    rejected = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
        ) as c:
            b = 0
            while time.perf_counter() < stop:
                ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                rows = []
                for i in range(100):
                    kind = rng.choice(kinds)
                    rows.append(
                        {
                            "event_id": f"{tag}-{k}-{b}-{i}",
                            "customer_id": rng.choice(ids),
                            "ts": ts if i else "not a time",  # one bad row per batch
                            "channel": "web",
                            "event_type": kind,
                            "amount": round(rng.uniform(5, 300), 2) if kind == "purchase" else None,
                            "resolved": False if kind == "complaint" else None,
                        }
                    )
                try:
                    r = c.post("/events", json={"rows": rows})
                    r.raise_for_status()
                except httpx.HTTPError as exc:
                    errors.append(repr(exc)[:200])
                    return
                body = r.json()
                sent[k] += len(rows)
                stored[k] += body.get("stored", len(rows))
                rejected[k] += len(body.get("rejected", ()))
                b += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "rows_sent": sum(sent),
        "rows_stored": sum(stored),
        "rows_rejected": sum(rejected),
        "wall_s": wall,
        "rows_per_s": sum(sent) / wall,
        "errors": errors[:5],
    }


def store_counts(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from store import Store

    with Store(url, create=False) as db, db.engine.connect() as conn:
        count = lambda t: conn.execute(select(func.count()).select_from(t)).scalar()  # noqa: E731
        return {
            "inbox_events": count(db.t.inbox_events),
            "inbox_feedback": count(db.t.inbox_feedback),
            "rejected": count(db.t.inbox_rejected),
            "moments": count(db.t.moments),
            "cases": count(db.t.cases),
            "score_history": count(db.t.score_history),
            "unhandled": conn.execute(
                select(func.count()).where(db.t.inbox_events.c.processed_at.is_(None))
            ).scalar(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--latency-rows", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.db)
        return

    import pandas as pd

    info = machine_info()
    print(
        f"machine: {info['cores_logical']} cores, {info['memory_gib']} GiB RAM, "
        f"{info['processor']}, Python {info['python']}, load average {info['load_average_1m']}",
        flush=True,
    )
    world = ensure_world(args.customers, args.seed)
    models_folder, uri, _ = service_world(20_000, 1)
    customers = pd.read_parquet(world / "customers.parquet", columns=["customer_id"])
    ids = customers["customer_id"].astype(str).tolist()
    events = pd.read_parquet(world / "events.parquet", columns=["customer_id"])
    print(f"book: {len(ids):,} customers, {len(events):,} events", flush=True)
    del events, customers
    tmp = Path(tempfile.mkdtemp(prefix="retain-realtime-"))
    results: dict[str, object] = {"machine": info, "customers": len(ids)}
    try:
        data = tmp / "data"
        data.mkdir()
        for f in world.glob("*.parquet"):
            os.symlink(f, data / f.name)
        store_url = f"sqlite:///{tmp / 'store.db'}"
        env = os.environ | {
            "MLFLOW_TRACKING_URI": uri,
            "RETAIN_API_KEYS": KEY,
            "RETAIN_STORE_URL": store_url,
            "BENTOML_HOME": str(tmp / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "OMP_NUM_THREADS": "1",
        }
        retain = str(Path(sys.executable).with_name("retain"))
        port = _free_port()
        proc, started = _start(
            [retain, "serve", "--port", str(port), "--data", str(data)]
            + ["--workers", str(args.workers)],
            env,
            tmp / "service.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        url = f"http://127.0.0.1:{port}"
        rss0, total0 = rss_gib(proc)
        print(
            f"service ready in {started:.1f} s ({args.workers} workers), largest worker RSS "
            f"{rss0:.2f} GiB, all processes {total0:.2f} GiB",
            flush=True,
        )
        try:
            lat = latency(url, ids, args.latency_rows, args.rate, random.Random(0))
            print(
                f"latency at {lat['rate_achieved']:.1f} rows/s: p50 {lat['p50_ms']:.1f} ms, "
                f"p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms; {lat['outcomes']}",
                flush=True,
            )
            thr = throughput(url, ids, args.clients, args.seconds, "svc")
            print(
                f"throughput, {args.clients} clients x batches of 100: "
                f"{thr['rows_per_s']:.0f} rows/s ({thr['rows_sent']:,} rows in "
                f"{thr['wall_s']:.1f} s), errors {len(thr['errors'])}",
                flush=True,
            )
            rss1, total1 = rss_gib(proc)
            print(f"at the end: largest worker {rss1:.2f} GiB, all {total1:.2f} GiB", flush=True)
        except Exception:
            print(f"service log (last lines):\n{(tmp / 'service.log').read_text()[-4000:]}")
            raise
        finally:
            _stop(proc)
        counts = store_counts(store_url)
        lost = thr["rows_sent"] - (counts["inbox_events"] + counts["rejected"])
        print(f"store: {counts}; rows sent - (inbox + rejected) = {lost}", flush=True)

        bare_port = _free_port()
        bare, _ = _start(
            [
                sys.executable,
                __file__,
                "--serve-bare",
                str(bare_port),
                "--db",
                str(tmp / "bare.db"),
            ],
            env,
            tmp / "bare.log",
            f"http://127.0.0.1:{bare_port}/healthz",
        )
        try:
            ref = throughput(
                f"http://127.0.0.1:{bare_port}", ids, args.clients, args.seconds, "bare"
            )
        finally:
            _stop(bare)
        print(
            f"reference (bare FastAPI + SQLite insert): {ref['rows_per_s']:.0f} rows/s", flush=True
        )
        verdict = {
            f"one client at {args.rate:g} rows/s kept up": lat["rate_achieved"] >= 0.95 * args.rate,
            "p50 <= 50 ms": lat["p50_ms"] <= 50,
            "p99 <= 250 ms": lat["p99_ms"] <= 250,
            ">= 2000 rows/s with 8 clients": thr["rows_per_s"] >= 2000,
            "nothing lost": lost == 0 and not thr["errors"] and counts["unhandled"] == 0,
        }
        for k, v in verdict.items():
            print(f"  {'PASS' if v else 'FAIL'}  {k}")
        print(f"service / bare throughput: {thr['rows_per_s'] / ref['rows_per_s']:.2f}")
        results.update(
            startup_s=started,
            workers=args.workers,
            worker_rss_gib={"after_start": rss0, "at_end": rss1},
            service_rss_gib={"after_start": total0, "at_end": total1},
            latency=lat,
            throughput=thr,
            store=counts,
            lost=lost,
            reference=ref,
            verdict=verdict,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
