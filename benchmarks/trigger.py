"""Retrain-trigger benchmark: does `retain monitor` fire on a drifted world and stay quiet on a
healthy one, on every seed?

For each seed and each of `--no-drift` / `--drift`, as a new user would: `retain generate
--customers N --seed S`, `retain train`, `retain score --as-of D` and `retain monitor --as-of D`
on the day D after the world's last event, each world with its own MLflow store. Worlds, models
and scores are cached in benchmarks/.cache/trigger_<N>_<seed>_<drift>/ (the monitor runs every
time, with the config given). Prints, per world, the drift share (ageing features left out),
the importance-weighted drift, the prediction drift and the exit status, then the verdict:
every drifted world exits 3 and no healthy one does.

    .venv/bin/python benchmarks/trigger.py [--seeds 0-9] [--customers 20000] [--config FILE]
        [--json out.json]

About 2.5 minutes per world the first time on 2 cores (generate, train, score), 30 s after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_info

CACHE = ROOT / "benchmarks" / ".cache"
RETAIN = str(Path(sys.executable).with_name("retain"))


def seeds_of(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _run(args: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("w") as handle:
        return subprocess.run(args, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode


def prepare(folder: Path, customers: int, seed: int, drift: bool, env: dict[str, str]) -> str:
    """The world trained and scored on the day after its last event (cached); that day."""
    import pandas as pd

    done = folder / "as_of"
    if done.exists():
        return done.read_text().strip()
    if folder.is_symlink():  # a cache entry linked elsewhere whose target is gone
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    flag = "--drift" if drift else "--no-drift"
    gen = [RETAIN, "generate", "--customers", str(customers), "--seed", str(seed), flag]
    if _run([*gen, "--out", str(data)], env, folder / "generate.log"):
        raise SystemExit(f"retain generate failed: see {folder / 'generate.log'}")
    ts = pd.to_datetime(pd.read_parquet(data / "events.parquet", columns=["ts"])["ts"])
    as_of = (ts.max().normalize() + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    if _run([RETAIN, "train", "--data", str(data)], env, folder / "train.log"):
        raise SystemExit(f"retain train failed: see {folder / 'train.log'}")
    score = [RETAIN, "score", "--data", str(data), "--as-of", as_of]
    if _run([*score, "--out", str(folder / "scores.parquet")], env, folder / "score.log"):
        raise SystemExit(f"retain score failed: see {folder / 'score.log'}")
    done.write_text(as_of)
    return as_of


def world(customers: int, seed: int, drift: bool, config: Path | None) -> dict[str, object]:
    folder = CACHE / f"trigger_{customers}_{seed}_{'drift' if drift else 'healthy'}"
    env = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{(folder / 'mlflow.db').resolve()}",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    start = time.perf_counter()
    as_of = prepare(folder, customers, seed, drift, env)
    out = folder / "monitor"
    args = [RETAIN, "monitor", "--data", str(folder / "data"), "--as-of", as_of, "--out", str(out)]
    if config is not None:
        args += ["--config", str(config)]
    code = _run(args, env, folder / "monitor.log")
    if code not in (0, 3):
        raise SystemExit(f"retain monitor exited {code}: see {folder / 'monitor.log'}")
    s = json.loads((out / "summary.json").read_text())
    return {
        "seed": seed,
        "drift": drift,
        "exit": code,
        "drift_share": s["drift_share"],
        "weighted_drift": s.get("weighted_drift"),
        "prediction_drift": {k: v["score"] for k, v in s["prediction_drift"].items()},
        "reason_mix_distance": (s.get("reason_mix") or {}).get("distance"),
        "drifted_columns": s["drifted_columns"][:8],
        "reasons": s["reasons"],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    info = machine_info()
    print(f"machine: {info['cores_logical']} cores, {info['memory_gib']} GiB RAM", flush=True)
    rows = []
    print("seed  world    exit  share  weighted  churn-pred  clv-pred  reasons  drifted (first)")
    for seed in seeds_of(args.seeds):
        for drift in (False, True):
            r = world(args.customers, seed, drift, args.config)
            rows.append(r)
            p = r["prediction_drift"]
            print(
                f"{seed:>4}  {'drift' if drift else 'healthy':<7}  {r['exit']:>4}  "
                f"{r['drift_share']:.3f}  {r['weighted_drift']:.3f}     "
                f"{p.get('churn_probability', float('nan')):.3f}       "
                f"{p.get('clv', float('nan')):.3f}     {r['reason_mix_distance'] or float('nan'):.3f}    "
                f"{', '.join(r['drifted_columns'][:4])}",
                flush=True,
            )
    fired = [r for r in rows if r["drift"] and r["exit"] != 3]
    false = [r for r in rows if not r["drift"] and r["exit"] == 3]
    print(
        f"{'PASS' if not fired else 'FAIL'}: every drifted world exits 3 (missed: "
        f"{[r['seed'] for r in fired]})"
    )
    print(
        f"{'PASS' if not false else 'FAIL'}: no healthy world exits 3 (false alarms: "
        f"{[r['seed'] for r in false]})"
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "worlds": rows}, indent=2))
    if fired or false:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
