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
