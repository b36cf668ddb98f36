"""Model-quality benchmark on the real public datasets in ../shared/data (next to the repository),
and optionally on synthetic worlds.

    .venv/bin/python benchmarks/quality.py [--data-root DIR] [--config FILE] [--out DIR]
        [--json PATH] [--synthetic-seeds 0-9] [--strict]

Prints the machine, the data sizes and, per dataset, the metrics with PASS/FAIL against the
targets of the quality issue. A dataset whose folder is absent is reported as "skipped".

(a) Online Retail (`<data-root>/online_retail/`): imported through
    `configs/mappings/online_retail.yaml`, validated, and backtested with `retain backtest`'s
    code (`training.backtest`) at 2011-06-11, 2011-07-11, 2011-08-10 and 2011-09-10 with a
    90-day horizon: at each cutoff training sees only what was known before it and the customers
    are scored on the horizon after it. The report (Markdown, CSV, plots) goes to `--out`.
    Targets, against BG/NBD (churn) and BG/NBD + Gamma-Gamma (CLV), with paired bootstrap 95%
    intervals over customers: churn ROC AUC no cutoff more than 0.003 below, mean difference
    >= +0.008 with the interval above zero; CLV normalised Gini no cutoff more than 0.003 below,
    mean >= +0.015 with the interval above zero; Spearman no cutoff more than 0.003 below, mean
    >= 0; and at every cutoff decile MAPE <= 0.30, churn ECE <= 0.03, CLV interval coverage
    within 5 points of its nominal share.
(b) Telco (`<data-root>/telco/*.csv`): 5-fold stratified cross-validation through
    `training.tabular.cross_validate`, the code behind `retain train --table`. Targets: pooled
    out-of-fold ROC AUC >= 0.852 with ECE <= 0.02, and at least the plain LightGBM baseline
    (300 trees, rate 0.05, one-hot) in the same folds.
(c) `--synthetic-seeds A-B`: the first training on synthetic worlds of 20,000 customers (the
    demo's size and start) must give churn and CLV models that beat every baseline.

`--strict` exits 1 when a dataset that ran missed a target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The project root ahead of this folder: benchmarks/features.py, training.py and monitoring.py
# share their names with the project's packages (Dask's worker processes inherit this path).
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import machine_info  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data"
RETAIL_CUTOFFS = ("2011-06-11", "2011-07-11", "2011-08-10", "2011-09-10")
RETAIL_HORIZON_DAYS = 90
TELCO_ID, TELCO_LABEL = "customerID", "Churn"
TELCO_MIN_AUC, TELCO_MAX_ECE = 0.852, 0.02
# (task, metric, baseline, worst cutoff difference, minimum mean difference, interval above 0)
RETAIL_MARGINS = (
    ("churn", "roc_auc", "bgnbd", -0.003, 0.008, True),
    ("clv", "gini_normalized", "bgnbd_gg", -0.003, 0.015, True),
    ("clv", "spearman", "bgnbd_gg", -0.003, 0.0, False),
)
MAX_DECILE_MAPE, MAX_ECE, MAX_COVERAGE_GAP = 0.30, 0.03, 0.05


def _progress(prefix: str):
    start = time.perf_counter()
    return lambda m: print(f"  [{time.perf_counter() - start:7.1f}s] {prefix}: {m}", flush=True)


def _verdict(checks: dict[str, bool]) -> bool:
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}: {name}")
    return all(checks.values())


def online_retail(folder: Path, settings, out: Path) -> dict[str, Any]:
    from features.mapping import apply_mapping, load_mapping, read_export
    from features.validate import validate
    from training.backtest import backtest, markdown, write_report

    settings = settings.model_copy(update={"horizon_days": RETAIL_HORIZON_DAYS})
    t0 = time.perf_counter()
    mapping = load_mapping(ROOT / "configs" / "mappings" / "online_retail.yaml")
    source = read_export(folder, mapping)
    result = validate(apply_mapping(source, mapping))
    t1 = time.perf_counter()
    print(result.summary())
    tables = result.tables
    run = backtest(tables, settings, RETAIL_CUTOFFS, progress=_progress("online_retail"))
    t2 = time.perf_counter()
    written = write_report(run, out / "online_retail")
    print(markdown(run))
    checks: dict[str, bool] = {}
    for task, metric, base, worst, mean, above in RETAIL_MARGINS:
        iv = run.intervals[task][base][metric]
        diffs = [d for d, _, _ in iv.per_cutoff]
        checks[f"{task} {metric} vs {base}: every cutoff >= {worst:+} (min {min(diffs):+.4f})"] = (
            min(diffs) >= worst
        )
        text = f"{task} {metric} vs {base}: mean {iv.mean:+.4f} >= {mean:+}"
        if above:
            text += f" with interval above 0 [{iv.low:+.4f}, {iv.high:+.4f}]"
        checks[text] = iv.mean >= mean and (iv.low > 0 or not above)
    rows = run.table[(run.table["scorer"] == "retain") & (run.table["cutoff"] != "pooled")]
    clv_rows = rows[rows["task"] == "clv"]
    churn_rows = rows[rows["task"] == "churn"]
    mape, ece = clv_rows["decile_mape"].max(), churn_rows["ece"].max()
    checks[f"clv decile MAPE <= {MAX_DECILE_MAPE} at every cutoff (max {mape:.3f})"] = (
        mape <= MAX_DECILE_MAPE
    )
    checks[f"churn ECE <= {MAX_ECE} at every cutoff (max {ece:.3f})"] = ece <= MAX_ECE
    gaps = [abs(d["clv_interval_coverage"] - d["clv_interval_nominal"]) for d in run.details]
    checks[
        f"clv interval coverage within {MAX_COVERAGE_GAP} of nominal at every cutoff "
        f"(worst gap {max(gaps):.3f})"
    ] = max(gaps) <= MAX_COVERAGE_GAP
    passed = _verdict(checks)
    print(f"  report: {', '.join(str(p) for p in written)}")
    return {
        "skipped": False,
        "passed": passed,
        "checks": checks,
        "lines_read": int(len(source)),
        "customers": int(len(tables.customers)),
        "events": int(len(tables.events)),
        "cutoffs": list(run.cutoffs),
        "details": run.details,
        "table": run.table.to_dict("records"),
        "intervals": {
            f"{t}.{b}.{m}": vars(iv)
            for t, by_b in run.intervals.items()
            for b, by_m in by_b.items()
            for m, iv in by_m.items()
        },
        "import_validate_s": t1 - t0,
        "backtest_s": t2 - t1,
    }


def telco(folder: Path, settings) -> dict[str, Any]:
    from training.tabular import FOLDS, cross_validate, load_table

    files = sorted(folder.glob("*.csv"))
    if len(files) != 1:
        raise SystemExit(
            f"telco: expected exactly one .csv in {folder}, found {[f.name for f in files]}"
        )
    t0 = time.perf_counter()
    table = load_table(files[0], TELCO_ID, TELCO_LABEL)
    print(
        f"  {files[0].name}: {len(table.X):,} customers, {table.X.shape[1]} features, churn share "
        f"{table.y.mean():.3f}, text as numbers {table.numeric_from_text}, dropped {table.dropped}"
    )
    cv = cross_validate(table.X, table.y, settings, progress=_progress("telco"))
    t1 = time.perf_counter()
    model = cv.model
    print(f"  {FOLDS}-fold stratified CV (seed {settings.training.seed}), pooled out of fold:")
    for name, m in {"model": model, **cv.baselines}.items():
        print(
            f"  {name:<15} ROC AUC {m['roc_auc']:.4f}  ECE {m['ece']:.4f}  Brier {m['brier']:.4f}"
        )
    plain = cv.baselines["lightgbm_plain"]["roc_auc"]
    passed = _verdict(
        {
            f"ROC AUC >= {TELCO_MIN_AUC} (got {model['roc_auc']:.4f})": model["roc_auc"]
            >= TELCO_MIN_AUC,
            f"ECE <= {TELCO_MAX_ECE} (got {model['ece']:.4f})": model["ece"] <= TELCO_MAX_ECE,
            f"at least plain LightGBM ({plain:.4f})": model["roc_auc"] >= plain,
        }
    )
    return {
        "skipped": False,
        "passed": bool(passed),
        "file": files[0].name,
        "rows": len(table.X),
        "features": table.X.shape[1],
        "churn_share": float(table.y.mean()),
        "model": model,
        **{f"baseline.{k}": v for k, v in cv.baselines.items()},
        "per_fold": cv.per_fold.reset_index().to_dict("records"),
        "cv_s": t1 - t0,
    }


def synthetic(seeds: list[int], settings) -> dict[str, Any]:
    from features.synthetic import generate_world
    from features.validate import validate
    from training.frames import build_training_data
    from training.pipeline import fit_and_evaluate

    rows, checks = [], {}
    for seed in seeds:
        t0 = time.perf_counter()
        tables = validate(generate_world(20_000, seed, start="2024-01-01")).tables
        trained = fit_and_evaluate(build_training_data(tables, settings), tables, settings)
        churn, clv = trained.churn_eval, trained.clv_eval
        best_churn = max(churn.baselines.items(), key=lambda kv: kv[1]["roc_auc"])
        best_clv = max(clv.baselines.items(), key=lambda kv: kv[1]["gini_normalized"])
        row = {
            "seed": seed,
            "churn_roc_auc": churn.model["roc_auc"],
            "best_churn_baseline": f"{best_churn[0]} {best_churn[1]['roc_auc']:.4f}",
            "clv_gini": clv.model["gini_normalized"],
            "best_clv_baseline": f"{best_clv[0]} {best_clv[1]['gini_normalized']:.4f}",
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(
            f"  seed {seed}: churn {row['churn_roc_auc']:.4f} (best baseline "
            f"{row['best_churn_baseline']}), clv Gini {row['clv_gini']:.4f} (best baseline "
            f"{row['best_clv_baseline']}), {row['seconds']:.0f} s",
            flush=True,
        )
        checks[f"seed {seed}: both models beat every baseline"] = (
            churn.model["roc_auc"] > best_churn[1]["roc_auc"]
            and clv.model["gini_normalized"] > best_clv[1]["gini_normalized"]
        )
    return {"skipped": False, "passed": _verdict(checks), "seeds": rows}


def _seeds(text: str | None) -> list[int]:
    if not text:
        return []
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--config", type=Path, help="YAML merged over configs/default.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "quality")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--synthetic-seeds", help="e.g. 0-9: first trainings on 20k worlds")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    from configs import load_settings

    settings = load_settings(args.config)
    results: dict[str, Any] = {"machine": machine_info(), "data_root": str(args.data_root)}
    m = results["machine"]
    print(
        f"machine: {m['cores_logical']} cores ({m['cores_physical']} physical), "
        f"{m['memory_gib']} GiB RAM, {m['processor']}, Python {m['python']}"
    )
    for name in ("online_retail", "telco"):
        folder = args.data_root / name
        print(f"\n{name}: {folder}")
        if not folder.is_dir():
            print(f"{name}: skipped: {folder} not present")
            results[name] = {"skipped": True, "reason": f"{folder} not present"}
            continue
        results[name] = (
            online_retail(folder, settings, args.out)
            if name == "online_retail"
            else telco(folder, settings)
        )
    seeds = _seeds(args.synthetic_seeds)
    if seeds:
        print(f"\nsynthetic worlds, 20,000 customers, seeds {seeds}")
        results["synthetic"] = synthetic(seeds, settings)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    missed = [n for n, r in results.items() if isinstance(r, dict) and r.get("passed") is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
