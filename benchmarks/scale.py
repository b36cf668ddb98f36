"""Scale benchmark: `retain features` and `retain score` on partitioned worlds of about 10M and
50M events, in one process and on a local Dask cluster of 1 and 2 workers (or the counts given).

Each run is the real command as a user types it, in a fresh process. A sampler reads the RSS of
the command and of every process under it (the Dask scheduler, nannies and workers are its
children) four times a second, and reports the peak of the command itself and the peak of the
largest worker; a run whose whole process tree goes above `--limit-gib` is stopped and reported
as not completing within the limit. As a reference measured in the same run, DuckDB computes
five per-customer aggregations over the same Parquet parts (event count, spend, latest event,
complaints, mean survey score).

    .venv/bin/python benchmarks/scale.py [--customers 1000000,5000000] [--workers 1,2]
        [--partitions 16] [--limit-gib 20] [--sections features,score,train]

Worlds come from `retain generate --partitions` (cached in benchmarks/.cache/, ignored by
git); the churn and CLV champions used by `score` are trained once on a 20,000-customer world
of the same business; the `train` section trains on that world (partitioned) in one process
and on the local clusters, and prints each headline metric's difference from one process. The
largest world each path completes is the largest size given that
finished under the limit: pass more sizes to search further.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import ROOT, duckdb_reference, machine  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
RETAIN = str(Path(sys.executable).parent / "retain")
AS_OF = "2025-12-01"


def command(*args: object) -> list[str]:
    return [RETAIN, *map(str, args)]


def retain(*args: object, cwd: Path, limit_gib: float) -> dict[str, object]:
    """Run one `retain` command; its wall time, peak RSS of the command and of its largest
    child process, and whether it finished under `limit_gib` for the whole tree."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        command(*args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peaks: dict[int, int] = {}
    tree_peak = [0]
    over = threading.Event()
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                peaks[p.pid] = max(peaks.get(p.pid, 0), rss)
                total += rss
            tree_peak[0] = max(tree_peak[0], total)
            if total > limit_gib * 2**30:
                over.set()
                for p in reversed(procs):
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                break
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0 and not over.is_set():
        raise SystemExit(f"retain {' '.join(map(str, args))} failed:\n{stderr[-3000:]}")
    own = peaks.pop(proc.pid, 0)
    return {
        "wall_s": round(wall, 1),
        "peak_command_gib": round(own / 2**30, 2),
        "peak_worker_gib": round(max(peaks.values(), default=0) / 2**30, 2),
        "peak_tree_gib": round(tree_peak[0] / 2**30, 2),
        "completed": not over.is_set(),
        "stdout": stdout,
    }


def ensure_world(customers: int, seed: int, partitions: int) -> tuple[Path, dict[str, int]]:
    folder = CACHE / f"parted_{customers}_{seed}_{partitions}"
    if not (folder / "manifest.json").is_file():
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted generation: no manifest, not a folder
        start = time.perf_counter()
        subprocess.run(
            command("generate", "--out", folder, "--customers", customers, "--seed", seed)
            + ["--partitions", str(partitions)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"  generated {customers:,} customers in {time.perf_counter() - start:.0f} s")
    rows = json.loads((folder / "manifest.json").read_text())["rows"]
    return folder, {name: sum(parts) for name, parts in rows.items()}


def ensure_models(seed: int) -> Path:
    """A working folder whose mlruns/ holds churn and CLV champions of the same business."""
    work = CACHE / f"scale_models_{seed}"
    marker = work / "trained.json"
    if marker.is_file():
        return work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    subprocess.run(
        command("generate", "--out", work / "data", "--customers", 20000, "--seed", seed),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    start = time.perf_counter()
    subprocess.run(
        command("train", "--data", work / "data", "--as-of", AS_OF),
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker.write_text(json.dumps({"trained_s": round(time.perf_counter() - start, 1)}))
    return work


def headline(stdout: str) -> dict[str, float]:
    """The metrics `retain train` prints (`  churn.roc_auc   0.7234`)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and "." in parts[0] and parts[0].split(".")[0] in ("churn", "clv"):
            out[parts[0]] = float(parts[1])
    return out


def train_section(seed: int, workers: list[int], limit_gib: float) -> list[dict[str, object]]:
    """`retain train` on the 20,000-customer world in one process and on local clusters (default
    config, search included): time, memory, and each headline metric against one process."""
    folder, rows = ensure_world(20000, seed, 4)
    print(f"\ntraining: 20,000 customers, {rows['events']:,} events, 4 partitions (default config)")
    results, base = [], None
    for address in [None, *[f"local:{n}" for n in workers]]:
        work = CACHE / f"scale_train_{address or 'single'}".replace(":", "_")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        cmd: list[object] = ["train", "--data", folder, "--as-of", AS_OF]
        if address:
            cmd += ["--cluster", address]
        run = retain(*cmd, cwd=work, limit_gib=limit_gib)
        metrics = headline(run.pop("stdout"))
        base = base or metrics
        diff = {k: round(v - base[k], 4) for k, v in metrics.items()}
        shutil.rmtree(work, ignore_errors=True)
        path = address or "one process"
        results.append(
            {
                "section": "train",
                "customers": 20000,
                "events": rows["events"],
                "path": path,
                **run,
                "metrics": metrics,
                "vs_one_process": diff,
            }
        )
        print(
            f"  train    {path:<11} {run['wall_s']:7.1f} s  command {run['peak_command_gib']:5.2f} GiB"
            f"  largest worker {run['peak_worker_gib']:5.2f} GiB  "
            + "  ".join(f"{k} {v:.4f} ({diff[k]:+.4f})" for k, v in metrics.items()),
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", default="1000000,5000000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit-gib", type=float, default=20.0)
    parser.add_argument("--sections", default="features,score")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    sizes = [int(x) for x in args.customers.split(",")]
    workers = [int(x) for x in args.workers.split(",")]
    sections = args.sections.split(",")

    print(f"machine: {machine()}; load {os.getloadavg()[0]:.1f}; limit {args.limit_gib} GiB")
    models = ensure_models(args.seed) if "score" in sections else None
    sizes = sizes if set(sections) - {"train"} else []
    results: list[dict[str, object]] = []
    for customers in sizes:
        folder, rows = ensure_world(customers, args.seed, args.partitions)
        duck = duckdb_reference(
            folder / "events" / "*.parquet", folder / "feedback" / "*.parquet", AS_OF
        )
        print(
            f"\nworld: {customers:,} customers, {rows['events']:,} events, "
            f"{rows.get('feedback', 0):,} responses, {args.partitions} partitions; "
            f"DuckDB 5 aggregations {duck:.2f} s"
        )
        with_cluster = [None, *[f"local:{n}" for n in workers]]
        for section in [s for s in sections if s != "train"]:
            for address in with_cluster:
                out = CACHE / f"scale_out_{section}.parquet"
                cmd: list[object] = [section, "--data", folder, "--as-of", AS_OF, "--out", out]
                if address:
                    cmd += ["--cluster", address]
                run = retain(*cmd, cwd=models or CACHE, limit_gib=args.limit_gib)
                run.pop("stdout")
                out.unlink(missing_ok=True)
                row = {
                    "section": section,
                    "customers": customers,
                    "events": rows["events"],
                    "path": address or "one process",
                    "duckdb_s": round(duck, 2),
                    **run,
                }
                results.append(row)
                state = "" if run["completed"] else f"  STOPPED above {args.limit_gib} GiB"
                print(
                    f"  {section:<8} {row['path']:<11} {run['wall_s']:7.1f} s "
                    f"({run['wall_s'] / duck:5.1f}x DuckDB)  command {run['peak_command_gib']:5.2f} GiB"
                    f"  largest worker {run['peak_worker_gib']:5.2f} GiB  tree {run['peak_tree_gib']:5.2f} GiB{state}",
                    flush=True,
                )
    if "train" in sections:
        results += train_section(args.seed, workers, args.limit_gib)
    print("\nlargest world completed within the limit:")
    for section in [s for s in sections if s != "train"]:
        for path in ["one process", *[f"local:{n}" for n in workers]]:
            done = [
                r["events"]
                for r in results
                if r["section"] == section and r["path"] == path and r["completed"]
            ]
            print(
                f"  {section:<8} {path:<11} {max(done):,} events"
                if done
                else f"  {section:<8} {path:<11} none"
            )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
