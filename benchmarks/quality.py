"""Model-quality benchmark on the real public datasets in ../shared/data (next to the repository).

    .venv/bin/python benchmarks/quality.py [--data-root DIR] [--config FILE] [--json PATH] [--strict]

Prints the machine, the data sizes and, per dataset, the metrics with PASS/FAIL against its
target. A dataset whose folder is absent is reported as "skipped: ... not present" (exit 0).

(a) Online Retail (`<data-root>/online_retail/`: the UCI .xlsx or a CSV copy, as
    `retain import` reads it): imported through `configs/mappings/online_retail.yaml`, validated,
    and replayed with horizon 90 days and known_until = 2011-09-10 + 90 days, so the evaluation
    snapshot is 2011-09-10 and every training label matured before it. `fit_and_evaluate` trains
    both models and their baselines. Target: the churn model's ROC AUC and the CLV model's
    normalised Gini and Spearman all beat the BG/NBD + Gamma-Gamma baseline.
    The default cutoffs (4, 30 days apart) fit this history: training cutoffs 2011-04-13,
    2011-05-13 and 2011-06-12 (the first invoice is 2010-12-01, so the oldest snapshot already
    has four months of history; 365-day windows are truncated as for any young business), and
    nothing closer is needed. `--config` can change them.
(b) Telco (`<data-root>/telco/*.csv`, the IBM "WA_Fn-UseC_-Telco-Customer-Churn" file): 5-fold
    stratified cross-validation through `training.static.cross_validate`, the code behind
    `retain train --table`. Target: pooled out-of-fold ROC AUC >= 0.85 and ECE < 0.02.

`--strict` exits 1 when a dataset that ran missed its target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data"
RETAIL_CUTOFF, RETAIL_HORIZON_DAYS = "2011-09-10", 90
TELCO_ID, TELCO_LABEL = "customerID", "Churn"
TELCO_MIN_AUC, TELCO_MAX_ECE = 0.85, 0.02


def _progress(prefix: str):
    start = time.perf_counter()
    return lambda m: print(f"  [{time.perf_counter() - start:7.1f}s] {prefix}: {m}", flush=True)


def online_retail(folder: Path, settings) -> dict[str, Any]:
    import pandas as pd

    from features.mapping import apply_mapping, load_mapping, read_export
    from features.validate import validate
    from training.frames import build_training_data
    from training.pipeline import fit_and_evaluate

    progress = _progress("online_retail")
    settings = settings.model_copy(update={"horizon_days": RETAIL_HORIZON_DAYS})
    t0 = time.perf_counter()
    mapping = load_mapping(ROOT / "configs" / "mappings" / "online_retail.yaml")
    source = read_export(folder, mapping)
    result = validate(apply_mapping(source, mapping))
    t1 = time.perf_counter()
    print(result.summary())
    tables = result.tables
    known_until = pd.Timestamp(RETAIL_CUTOFF, tz="UTC") + pd.Timedelta(days=RETAIL_HORIZON_DAYS)
    data = build_training_data(tables, settings, known_until, progress=progress)
    trained = fit_and_evaluate(data, tables, settings, progress=progress)
    t2 = time.perf_counter()

    churn, clv = trained.churn_eval, trained.clv_eval
    rows = [("model", churn.model["roc_auc"], clv.model["gini_normalized"], clv.model["spearman"])]
    rows += [(f"churn baseline {k}", m["roc_auc"], None, None) for k, m in churn.baselines.items()]
    rows += [
        (f"clv baseline {k}", None, m["gini_normalized"], m["spearman"])
        for k, m in clv.baselines.items()
    ]
    print(f"  {'':<28}{'churn ROC AUC':>15}{'CLV Gini':>11}{'Spearman':>11}")
    for name, auc, gini, rho in rows:
        cells = "".join(
            f"{v:>{w}.4f}" if v is not None else f"{'':>{w}}"
            for v, w in ((auc, 15), (gini, 11), (rho, 11))
        )
        print(f"  {name:<28}{cells}")
    bg_churn, bg_clv = churn.baselines["bgnbd"], clv.baselines["bgnbd_gg"]
    checks = {
        "churn roc_auc > bgnbd": churn.model["roc_auc"] > bg_churn["roc_auc"],
        "clv gini_normalized > bgnbd_gg": clv.model["gini_normalized"] > bg_clv["gini_normalized"],
        "clv spearman > bgnbd_gg": clv.model["spearman"] > bg_clv["spearman"],
    }
    passed = all(checks.values())
    print(
        f"  {'PASS' if passed else 'FAIL'}: models beat BG/NBD + Gamma-Gamma on all three {checks}"
    )
    return {
        "skipped": False,
        "passed": passed,
        "checks": checks,
        "lines_read": int(len(source)),
        "report": {k: vars(r) for k, r in result.report.items()},
        "customers": int(len(tables.customers)),
        "events": int(len(tables.events)),
        "cutoffs": data.cutoffs.as_dict(),
        "rows": data.rows(),
        "evaluation_churn_rate": float(trained.predictions["churned"].mean()),
        "churn": {"model": churn.model, **{f"baseline.{k}": v for k, v in churn.baselines.items()}},
        "clv": {"model": clv.model, **{f"baseline.{k}": v for k, v in clv.baselines.items()}},
        "churn_calibrator": trained.churn.calibrator.kind,
        "clv_objective": trained.clv.objective,
        "import_validate_s": t1 - t0,
        "features_fit_evaluate_s": t2 - t1,
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
    folds, model, logistic = cv.per_fold, cv.model, cv.baselines["logistic"]
    print(f"  {FOLDS}-fold stratified CV (seed {settings.training.seed}), pooled out of fold:")
    print(
        f"  model     ROC AUC {model['roc_auc']:.4f} (folds {folds['roc_auc'].mean():.4f} "
        f"+/- {folds['roc_auc'].std(ddof=1):.4f})  ECE {model['ece']:.4f}  Brier {model['brier']:.4f}"
    )
    print(
        f"  logistic  ROC AUC {logistic['roc_auc']:.4f} (folds "
        f"{folds['logistic_roc_auc'].mean():.4f} +/- {folds['logistic_roc_auc'].std(ddof=1):.4f})"
        f"  ECE {logistic['ece']:.4f}  Brier {logistic['brier']:.4f}"
    )
    passed = model["roc_auc"] >= TELCO_MIN_AUC and model["ece"] < TELCO_MAX_ECE
    print(
        f"  {'PASS' if passed else 'FAIL'}: target ROC AUC >= {TELCO_MIN_AUC} (got "
        f"{model['roc_auc']:.4f}) and ECE < {TELCO_MAX_ECE} (got {model['ece']:.4f})"
    )
    return {
        "skipped": False,
        "passed": bool(passed),
        "file": files[0].name,
        "rows": len(table.X),
        "features": table.X.shape[1],
        "churn_share": float(table.y.mean()),
        "roc_auc": model["roc_auc"],
        "ece": model["ece"],
        "model": model,
        "baseline.logistic": logistic,
        "per_fold": folds.reset_index().to_dict("records"),
        "cv_s": t1 - t0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--config", type=Path, help="YAML merged over configs/default.yaml")
    parser.add_argument("--json", type=Path, help="write the results here")
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
    for name, run in (("online_retail", online_retail), ("telco", telco)):
        folder = args.data_root / name
        print(f"\n{name}: {folder}")
        if not folder.is_dir():
            print(f"{name}: skipped: {folder} not present")
            results[name] = {"skipped": True, "reason": f"{folder} not present"}
            continue
        results[name] = run(folder, settings)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    missed = [n for n in ("online_retail", "telco") if results[n].get("passed") is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
