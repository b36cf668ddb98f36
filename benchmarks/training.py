"""Training benchmark: 200k customers x 4 snapshots (3 training cutoffs + the evaluation one).

Runs one full `retain train` (features for every snapshot, churn and CLV models with their
candidates and interval models, baselines, MLflow logging and registration) into a throwaway
MLflow store, and reports each stage with its share of the total. As a scale reference measured
in the same run, it times a bare `lightgbm.train` of one binary booster on the same stacked
training matrix with the same number of trees the churn model ended up with.

    .venv/bin/python benchmarks/training.py [--customers 200000] [--seed 1] [--json PATH]

Targets (2 cores): total under 10 minutes; MLflow logging under 5% of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_world, machine, peak_rss_gib


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import lightgbm as lgb
    import numpy as np

    from configs import load_settings
    from features.sources import read_folder
    from features.validate import validate
    from model.registry import Registry
    from model.schema import FeatureSchema, feature_matrix
    from training.boosting import DEFAULT_PARAMS
    from training.pipeline import _split_fit_valid
    from training.run import train_and_register

    print(f"machine: {machine()}", flush=True)
    folder = ensure_world(args.customers, args.seed)
    settings = load_settings()
    t0 = time.perf_counter()
    tables = validate(read_folder(folder)).tables
    load_s = time.perf_counter() - t0

    captured = {}

    def progress(msg: str) -> None:
        print(f"  [{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        t1 = time.perf_counter()
        report = train_and_register(
            tables,
            settings,
            source=str(folder),
            config_text="",
            registry=Registry(uri),
            progress=progress,
        )
        train_s = time.perf_counter() - t1

        import mlflow

        run = mlflow.MlflowClient(tracking_uri=uri).get_run(report.run_id)
        captured["best_iteration"] = int(run.data.metrics["churn.best_iteration"])
        rows = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=report.run_id, artifact_path="lineage.json", tracking_uri=uri
                )
            ).read_text()
        )["rows"]

    # Reference: a bare LightGBM fit of the same size (same stacked matrix, same trees).
    from training.frames import build_training_data

    data = build_training_data(tables, settings)
    X_fit, y_fit, *_ = _split_fit_valid(data)
    schema = FeatureSchema.from_frame(X_fit)
    X = feature_matrix(X_fit, schema)
    params = {**DEFAULT_PARAMS, "objective": "binary"}
    t2 = time.perf_counter()
    lgb.train(
        params,
        lgb.Dataset(
            X,
            label=y_fit["churned"].to_numpy(np.float64),
            feature_name=list(schema.columns),
            categorical_feature=schema.categorical,
        ),
        num_boost_round=captured["best_iteration"],
    )
    ref_s = time.perf_counter() - t2

    timings = dict(report.timings)
    mlflow_share = timings.get("mlflow_log_s", 0.0) / train_s
    result = {
        "machine": machine(),
        "customers": args.customers,
        "snapshot_rows": rows,
        "fit_rows": len(X_fit),
        "n_features": X.shape[1],
        "load_validate_s": load_s,
        "train_total_s": train_s,
        **timings,
        "mlflow_share": mlflow_share,
        "reference_lgb_train_s": ref_s,
        "reference_trees": captured["best_iteration"],
        "peak_rss_gib": peak_rss_gib(),
    }
    print(
        f"sizes: {args.customers:,} customers; snapshot rows {rows}; fit rows {len(X_fit):,} x {X.shape[1]} features"
    )
    print(f"load + validate    {load_s:7.1f} s (not part of training)")
    for k, v in timings.items():
        print(f"{k:<18} {v:7.1f} s  ({v / train_s:5.1%})")
    print(f"train total        {train_s:7.1f} s   (target < 600 s)")
    print(f"MLflow logging     {mlflow_share:7.1%}     (target < 5%)")
    print(
        f"reference: bare lightgbm.train, {captured['best_iteration']} trees on the fit matrix: {ref_s:.1f} s; "
        f"train total / reference = {train_s / ref_s:.1f}x"
    )
    print(f"peak RSS           {result['peak_rss_gib']:7.2f} GiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
