"""Scoring benchmark: rank 1M customers with both champion models.

Section `batch` times what `retain score` does after the features are built: `serving.core.
ranking.rank_features` (one feature matrix per batch of `scoring.batch_size`, churn probability, CLV
with its interval, value at risk, tier, ranking, reasons for the top `scoring.reasons_top_n`)
against the floor of any implementation: raw `lightgbm.Booster.predict` of every booster the
two models hold (churn, the CLV point model(s), the two CLV quantile models) on the same
features as one ready-made float64 NumPy matrix. Target: rank_features' rows per second
>= 50% of the raw rate.

How the 1M rows are made cheaply: a synthetic world (`--customers`, default 20,000) is
generated, the churn and CLV models are fitted on it exactly as `training.pipeline` does with
the default settings (early stopping picks the number of trees), and the population's features
at the end of the data (~12.7k customers x 140 columns) are tiled up to `--rows` with fresh
customer ids, every numeric value multiplied by a random factor exp(N(0, 0.1)) so rows differ
and take different paths through the trees. World and models are cached in
benchmarks/.cache/ (ignored by git); the models are plain files (`model.artifact`).

    .venv/bin/python benchmarks/scoring.py [--rows 1000000] [--section batch] [--json out.json]

Section `service` starts the real HTTP service (`retain serve`, i.e. `bentoml serve` with the
API key check and size limits) on a registry holding the same champions and a scored snapshot,
and next to it a bare FastAPI + uvicorn app wrapping the same scoring call, both on this
machine; a pool of the world's real feature records is sent one customer per request, with
reasons: one client (p50/p99 latency; targets <= 5 ms and <= 20 ms), 8 concurrent clients
(throughput of both; target: service >= 50% of bare) and 32 (target: no 5xx). Rounds alternate
between the two servers `--repeat` times; the best round of each is reported.

    .venv/bin/python benchmarks/scoring.py --section service [--service-requests 1000]

Raw and ranked runs alternate `--repeat` times and the best of each is reported, since these
machines are shared and a neighbour's load comes and goes (`--threads 1` takes OpenMP barrier
stalls out of the noise on a busy machine; both sides always run with the same threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# The project root ahead of this folder: benchmarks/features.py, training.py and monitoring.py
# share their names with the project's packages (Dask's worker processes inherit this path).
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import machine_info  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
AS_OF = "2026-01-01"  # the end of a generated world's two years


def champions_and_features(customers: int, seed: int):
    """Champion models fitted on a cached world, and that world's features at AS_OF."""
    from configs import load_settings
    from features.build import build_features
    from features.sources import read_folder
    from features.synthetic import generate_world, write_world
    from features.validate import validate
    from model.artifact import load_model, save_model
    from serving.core.champions import Champions
    from training.churn import ChurnTrainer
    from training.clv import ClvTrainer
    from training.frames import build_training_data
    from training.pipeline import _split_fit_valid

    settings = load_settings()
    folder = CACHE / f"scoring_world_{customers}_{seed}"
    if not (folder / "events.parquet").exists():
        print(f"generating a world of {customers:,} customers ...", flush=True)
        write_world(generate_world(customers, seed), folder)
    tables = validate(read_folder(folder)).tables
    models = folder / "models"
    if not (models / "clv" / "meta.json").exists():
        print("fitting churn and CLV models (default settings) ...", flush=True)
        t = settings.training
        X_fit, y_fit, X_valid, y_valid, _ = _split_fit_valid(build_training_data(tables, settings))
        common = {
            "num_boost_round": t.num_boost_round,
            "early_stopping_rounds": t.early_stopping_rounds,
            "seed": t.seed,
        }
        churn = ChurnTrainer(dict(t.churn_params), **common).fit(
            X_fit, y_fit["churned"], X_valid, y_valid["churned"]
        )
        clv = ClvTrainer(dict(t.clv_params), **common).fit(
            X_fit, y_fit["future_value"], X_valid, y_valid["future_value"]
        )
        save_model(churn, models / "churn")
        save_model(clv, models / "clv")
    champions = Champions(
        churn=load_model(models / "churn"),
        clv=load_model(models / "clv"),
        churn_version="bench",
        clv_version="bench",
    )
    return champions, build_features(tables, AS_OF, settings), settings


def tile(features: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`features` repeated up to `rows` rows with new ids; numbers perturbed by exp(N(0, 0.1))."""
    rng = np.random.default_rng(seed)
    take = np.arange(rows) % len(features)
    cols: dict[str, object] = {}
    for col in features.columns:
        s = features[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols[col] = pd.Categorical.from_codes(s.cat.codes.to_numpy()[take], dtype=s.dtype)
        else:
            values = s.to_numpy(dtype=np.float64)[take]
            cols[col] = values * np.exp(rng.normal(0.0, 0.1, rows))
    index = pd.Index([f"B{i:09d}" for i in range(rows)], name="customer_id")
    return pd.DataFrame(cols, index=index)


def raw_predict(champions, M: np.ndarray) -> float:
    """Seconds for every booster of both models to predict on the matrix M."""
    start = time.perf_counter()
    champions.churn.booster.predict(M, raw_score=True, num_iteration=champions.churn.best_iteration)
    for booster in champions.clv.boosters.values():
        booster.predict(M, num_iteration=booster.best_iteration)
    return time.perf_counter() - start


def batch_section(args: argparse.Namespace) -> dict[str, object]:
    from model.schema import feature_matrix
    from serving.core.explain import reasons_for
    from serving.core.ranking import rank_features

    champions, base, settings = champions_and_features(args.customers, args.seed)
    trees = {"churn": champions.churn.booster.num_trees()} | {
        f"clv.{k}": b.num_trees() for k, b in sorted(champions.clv.boosters.items())
    }
    t0 = time.perf_counter()
    X = tile(base, args.rows, args.seed)
    tile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    M = np.ascontiguousarray(feature_matrix(X, champions.churn.schema))
    matrix_s = time.perf_counter() - t0
    print(
        f"sizes: {args.rows:,} customers x {X.shape[1]} features (tiled from {len(base):,} in "
        f"{tile_s:.1f} s); boosters (trees): {trees}; matrix {M.nbytes / 2**30:.2f} GiB; "
        f"batch_size {settings.scoring.batch_size:,}, reasons_top_n {settings.scoring.reasons_top_n:,}",
        flush=True,
    )

    raw_runs, rank_runs = [], []
    ranked = None
    for i in range(args.repeat):
        raw_runs.append(raw_predict(champions, M))
        start = time.perf_counter()
        ranked = rank_features(X, champions, settings)
        rank_runs.append(time.perf_counter() - start)
        print(
            f"  run {i + 1}/{args.repeat}: raw predict {raw_runs[-1]:.2f} s, "
            f"rank_features {rank_runs[-1]:.2f} s",
            flush=True,
        )
    del M
    assert ranked is not None and len(ranked) == args.rows

    # Where rank_features' time goes beyond prediction (measured separately, once).
    t0 = time.perf_counter()
    for start in range(0, args.rows, settings.scoring.batch_size):
        feature_matrix(X.iloc[start : start + settings.scoring.batch_size], champions.churn.schema)
    matrices_s = time.perf_counter() - t0
    top = X.loc[ranked["customer_id"].head(settings.scoring.reasons_top_n)]
    t0 = time.perf_counter()
    reasons_for(top, champions)
    reasons_s = time.perf_counter() - t0

    raw_s, rank_s = min(raw_runs), min(rank_runs)
    raw_rate, rank_rate = args.rows / raw_s, args.rows / rank_s
    ratio = rank_rate / raw_rate
    print(
        f"raw Booster.predict (all {len(trees)} boosters, one matrix): {raw_s:7.2f} s  {raw_rate:12,.0f} rows/s"
    )
    print(
        f"rank_features (scores, tiers, ranking, reasons): {rank_s:7.2f} s  {rank_rate:12,.0f} rows/s"
    )
    print(f"ratio: {ratio:.2f} (target >= 0.50) {'PASS' if ratio >= 0.5 else 'FAIL'}")
    print(
        f"of which: feature matrices {matrices_s:.2f} s, reasons for the top "
        f"{settings.scoring.reasons_top_n:,} {reasons_s:.2f} s (building one matrix for the raw "
        f"baseline took {matrix_s:.2f} s)"
    )
    return {
        "rows": args.rows,
        "features": int(X.shape[1]),
        "base_population": len(base),
        "trees": trees,
        "batch_size": settings.scoring.batch_size,
        "reasons_top_n": settings.scoring.reasons_top_n,
        "raw_predict_s": raw_runs,
        "rank_features_s": rank_runs,
        "raw_rows_per_s": raw_rate,
        "rank_rows_per_s": rank_rate,
        "ratio": ratio,
        "target_ratio": 0.5,
        "feature_matrices_s": matrices_s,
        "reasons_s": reasons_s,
    }


# --------------------------------------------------------------------------- service section

SERVICE_KEY = "benchmark-key"


def service_world(customers: int, seed: int):
    """The batch section's cached champions registered in an MLflow store of their own, and a
    scored snapshot of the world at AS_OF: what `retain serve` needs. Cached next to the world."""
    import mlflow

    from features.contract import to_utc
    from model.registry import Registry
    from serving.core.ranking import ScoredList, rank_features
    from serving.score_store import ScoreStore
    from training.tracking import log_model

    champions, base, settings = champions_and_features(customers, seed)
    folder = CACHE / f"service_{customers}_{seed}"
    uri = f"sqlite:///{(folder / 'mlruns' / 'mlflow.db').resolve()}"
    if not (folder / "ready").exists():
        print("registering the champions in a benchmark MLflow store ...", flush=True)
        registry = Registry(uri)
        experiment = registry.ensure_experiment("retain-benchmark")
        with (
            registry.active(),
            mlflow.start_run(experiment_id=experiment, run_name="service-benchmark"),
        ):
            for kind, model in (("churn", champions.churn), ("clv", champions.clv)):
                info = log_model(kind, model, base.head(200), folder / "models")
                version = str(info.registered_model_version)
                registry.record_promotion(kind, version, kind="manual", reason="benchmark")
        ranked = rank_features(base, champions, settings)
        ScoreStore(folder / "data").save(ScoredList(to_utc(AS_OF), ranked, base))
        (folder / "ready").write_text("ok\n")
    return folder, uri, base


def _json_records(X: pd.DataFrame) -> list[dict]:
    """Feature rows as JSON objects (NaN as null, categories as their value)."""
    out = []
    cats = {c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
    for cid, row in zip(X.index, X.itertuples(index=False), strict=True):
        record: dict[str, object] = {"customer_id": str(cid)}
        for col, value in zip(X.columns, row, strict=True):
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            record[col] = None if missing else (str(value) if col in cats else float(value))
        out.append(record)
    return out


def _request(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SERVICE_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _exchange(reader, writer, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def load(port: int, requests: list[bytes], clients: int) -> dict[str, object]:
    """Send `requests` over `clients` keep-alive connections, each waiting for its answer before
    sending the next (a closed loop, like `clients` users). A minimal HTTP/1.1 client on raw
    asyncio streams, so the client costs the two shared cores as little as possible."""
    import asyncio

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    queue = iter(requests)

    async def user() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            errors.append(repr(exc))
            return
        try:
            for request in queue:
                start = time.perf_counter()
                try:
                    status, _ = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(repr(exc))
                    return
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(clients)))
        return time.perf_counter() - start

    wall = asyncio.run(run())
    ms = np.asarray(latencies) * 1e3
    return {
        "clients": clients,
        "requests": len(latencies),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall if wall else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "connection_errors": len(errors),
    }


def _start(args: list[str], env: dict[str, str], log: Path, ready: str):
    import subprocess

    import httpx

    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    start = time.perf_counter()
    while time.perf_counter() - start < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[:3]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    _stop(proc)
    raise RuntimeError(f"{args[:3]} not ready in 300 s:\n{log.read_text()[-3000:]}")


def _stop(proc) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_bare(port: int, uri: str) -> None:
    """The reference: a bare FastAPI app on uvicorn (one process, like the service's one worker)
    wrapping the same scoring call (`ServiceCore.score` on the same champions) behind an
    `async def` endpoint, with no API key, size limits, metrics or BentoML machinery."""
    import uvicorn
    from fastapi import FastAPI, Response

    from configs import load_settings
    from model.registry import Registry
    from serving.core.champions import load_champions
    from serving.http.core import ServiceCore
    from serving.http.loaded import LatestList
    from serving.http.payloads import ScoreRequest

    champions = load_champions(Registry(uri))
    core = ServiceCore(champions, load_settings(), LatestList(None, champions))
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    async def score(request: ScoreRequest) -> Response:
        result = core.score(records=request.records, reasons=request.reasons)
        return Response(result.model_dump_json(), media_type="application/json")

    # This module's annotations are strings; FastAPI cannot see the local imports they name.
    score.__annotations__ = {"request": ScoreRequest, "return": Response}
    app.post("/score")(score)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def service_section(args: argparse.Namespace) -> dict[str, object]:
    """`retain serve` (BentoML) against a bare FastAPI + uvicorn app around the same scoring."""
    folder, uri, base = service_world(args.customers, args.seed)
    pool = _json_records(base)
    one = [_request("/score", {"records": [r]}) for r in pool]
    by_id = [_request("/score", {"customer_ids": [r["customer_id"]]}) for r in pool]
    sizes = [len(r) for r in one]
    print(
        f"sizes: pool of {len(pool):,} real customers' feature records ({base.shape[1]} features), "
        f"one customer per request with reasons, {np.median(sizes) / 1024:.1f} KiB per request",
        flush=True,
    )
    env = dict(os.environ) | {
        "MLFLOW_TRACKING_URI": uri,
        "RETAIN_API_KEYS": SERVICE_KEY,
        "BENTOML_HOME": str(CACHE / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OMP_NUM_THREADS": "1",
    }
    retain = str(Path(sys.executable).with_name("retain"))
    ports = {"service": _free_port(), "bare": _free_port()}
    procs = {}
    try:
        procs["service"], service_start = _start(
            [retain, "serve", "--port", str(ports["service"]), "--data", str(folder / "data")],
            env,
            folder / "service.log",
            f"http://127.0.0.1:{ports['service']}/readyz",
        )
        procs["bare"], bare_start = _start(
            [sys.executable, __file__, "--serve-bare", str(ports["bare"]), "--tracking-uri", uri],
            env,
            folder / "bare.log",
            f"http://127.0.0.1:{ports['bare']}/healthz",
        )
        print(f"started: service in {service_start:.1f} s, bare FastAPI in {bare_start:.1f} s")
        same = _same_answers(ports, one[:20])
        print(f"same scores from both servers for 20 customers: {same}", flush=True)
        for port in ports.values():  # warm up: first requests pay for lazy imports
            load(port, one[:200], 1)
            load(port, one[:400], 8)

        n = args.service_requests
        rounds: list[dict[str, object]] = []
        offset = 0
        for r in range(args.repeat):
            row: dict[str, object] = {}
            for name, port in ports.items():
                take = [one[(offset + i) % len(one)] for i in range(n)]
                row[f"{name}_1"] = load(port, take, 1)
                row[f"{name}_8"] = load(port, take + take, 8)
                row[f"{name}_32"] = load(port, take + take, 32)
            row["service_1_by_id"] = load(
                ports["service"], [by_id[(offset + i) % len(by_id)] for i in range(n)], 1
            )
            offset += n
            rounds.append(row)
            print(
                f"  round {r + 1}/{args.repeat}: 1 client p50/p99 service "
                f"{row['service_1']['p50_ms']:.2f}/{row['service_1']['p99_ms']:.2f} ms, bare "
                f"{row['bare_1']['p50_ms']:.2f}/{row['bare_1']['p99_ms']:.2f} ms; 8 clients "
                f"service {row['service_8']['requests_per_s']:.0f}/s, bare "
                f"{row['bare_8']['requests_per_s']:.0f}/s; 32 clients service 5xx "
                f"{row['service_32']['server_errors']}, conn errors "
                f"{row['service_32']['connection_errors']}",
                flush=True,
            )
    finally:
        for proc in procs.values():
            _stop(proc)

    def best(key: str, field: str, pick=min) -> float:
        return pick(r[key][field] for r in rounds)

    p50, p99 = best("service_1", "p50_ms"), best("service_1", "p99_ms")
    rate = best("service_8", "requests_per_s", max)
    bare_rate = best("bare_8", "requests_per_s", max)
    ratio = rate / bare_rate
    # The same ratio within each round (both servers measured minutes apart at most).
    round_ratios = [
        r["service_8"]["requests_per_s"] / r["bare_8"]["requests_per_s"] for r in rounds
    ]
    fivexx = sum(
        r["service_32"]["server_errors"] + r["service_32"]["connection_errors"] for r in rounds
    )
    not_ok = sorted({k for r in rounds for k, v in r.items() if set(v["statuses"]) != {"200"}})
    checks = {
        "every answer 200 (but 5xx counted at 32)": not (set(not_ok) - {"service_32", "bare_32"}),
        "p50_ms <= 5": p50 <= 5,
        "p99_ms <= 20": p99 <= 20,
        "8 clients >= 50% of bare": ratio >= 0.5,
        "no 5xx at 32 clients": fivexx == 0,
    }
    print(
        f"one client, one customer with reasons: p50 {p50:.2f} ms, p99 {p99:.2f} ms (best round; "
        f"bare FastAPI p50 {best('bare_1', 'p50_ms'):.2f} ms, p99 {best('bare_1', 'p99_ms'):.2f} ms)"
    )
    print(
        f"by customer id instead of record: p50 {best('service_1_by_id', 'p50_ms'):.2f} ms, "
        f"p99 {best('service_1_by_id', 'p99_ms'):.2f} ms"
    )
    print(
        f"8 clients: service {rate:.0f} requests/s, bare FastAPI {bare_rate:.0f} requests/s, "
        f"ratio {ratio:.2f} (best of each; within rounds "
        f"{', '.join(f'{x:.2f}' for x in round_ratios)})"
    )
    print(
        f"32 clients: service {best('service_32', 'requests_per_s', max):.0f} requests/s, "
        f"{fivexx} 5xx or dropped connections in {sum(r['service_32']['requests'] for r in rounds):,} requests"
    )
    for check, ok in checks.items():
        print(f"  {check}: {'PASS' if ok else 'FAIL'}")
    return {
        "pool": len(pool),
        "features": int(base.shape[1]),
        "request_bytes_median": float(np.median(sizes)),
        "requests_per_round": n,
        "same_answers": same,
        "startup_s": {"service": service_start, "bare": bare_start},
        "p50_ms": p50,
        "p99_ms": p99,
        "throughput_8": rate,
        "bare_throughput_8": bare_rate,
        "ratio_8": ratio,
        "ratio_8_per_round": round_ratios,
        "server_errors_32": fivexx,
        "checks": checks,
        "rounds": rounds,
    }


def _same_answers(ports: dict[str, int], requests: list[bytes]) -> bool:
    import asyncio

    async def ask(port: int) -> list[object]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for request in requests:
            status, body = await _exchange(reader, writer, request)
            answer = json.loads(body)
            if status != 200:
                raise RuntimeError(f"port {port}: {status} {answer}")
            out.append(answer["results"])
        writer.close()
        return out

    answers = [asyncio.run(ask(port)) for port in ports.values()]
    return answers[0] == answers[1]


SECTIONS = {"batch": batch_section, "service": service_section}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=20_000, help="world the models learn on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        help="OpenMP threads for LightGBM (both sides; default: all cores). On a shared machine "
        "1 avoids threads waiting at barriers for a preempted sibling, which adds noise",
    )
    parser.add_argument(
        "--service-requests",
        type=int,
        default=1000,
        help="service section: requests per round for one client (twice as many for 8 and 32)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:  # the service section's reference server, in its own process
        serve_bare(args.serve_bare, args.tracking_uri)
        return
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before LightGBM starts OpenMP

    import lightgbm

    info = machine_info() | {
        "lightgbm": lightgbm.__version__,
        "omp_threads": args.threads or "default",
    }
    print(
        f"machine: {info['cores_logical']} cores ({info['cores_physical']} physical), "
        f"{info['memory_gib']} GiB RAM, {info['processor']}, Python {info['python']}, "
        f"LightGBM {info['lightgbm']} ({info['omp_threads']} threads), load average "
        f"{info['load_average_1m']}",
        flush=True,
    )
    results: dict[str, object] = {"machine": info}
    for name, section in SECTIONS.items():
        if args.section in (name, "all"):
            print(f"== {name}", flush=True)
            results[name] = section(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results -> {args.json}")


if __name__ == "__main__":
    main()
