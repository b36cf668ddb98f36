"""Scoring benchmark: rank 1M customers with both champion models.

Section `batch` (the only one so far; `--section` picks sections, a later one adds the HTTP
service) times what `retain score` does after the features are built: `serving.batch.
rank_features` (one feature matrix per batch of `scoring.batch_size`, churn probability, CLV
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
benchmarks/.cache/ (ignored by git); the models are plain files (`training.persist`).

    .venv/bin/python benchmarks/scoring.py [--rows 1000000] [--section batch] [--json out.json]

Raw and ranked runs alternate `--repeat` times and the best of each is reported, since these
machines are shared and a neighbour's load comes and goes (`--threads 1` takes OpenMP barrier
stalls out of the noise on a busy machine; both sides always run with the same threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "benchmarks" / ".cache"
AS_OF = "2026-01-01"  # the end of a generated world's two years


def machine() -> dict[str, object]:
    import psutil

    return {
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def champions_and_features(customers: int, seed: int):
    """Champion models fitted on a cached world, and that world's features at AS_OF."""
    from configs import load_settings
    from features.build import build_features
    from features.sources import read_folder
    from features.synthetic import generate_world, write_world
    from features.validate import validate
    from serving.scoring import Champions
    from training.frames import build_training_data
    from training.models import ChurnModel, ClvModel
    from training.persist import load_model, save_model
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
        churn = ChurnModel(dict(t.churn_params), **common).fit(
            X_fit, y_fit["churned"], X_valid, y_valid["churned"]
        )
        clv = ClvModel(dict(t.clv_params), **common).fit(
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
    from serving.batch import rank_features
    from serving.scoring import feature_matrix, reasons_for

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


SECTIONS = {"batch": batch_section}


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
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before LightGBM starts OpenMP

    import lightgbm

    info = machine() | {"lightgbm": lightgbm.__version__, "omp_threads": args.threads or "default"}
    print(
        f"machine: {info['cores_logical']} cores ({info['cores_physical']} physical), "
        f"{info['memory_gib']} GiB RAM, {info['cpu']}, Python {info['python']}, "
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
