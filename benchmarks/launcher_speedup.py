"""Wall time of a suite with ``--launcher local`` against ``--launcher ray`` (local Ray instance), same machine.

Runs ``bench run --suite SUITE`` three times in fresh output and cache folders (so each pays the same
real-feature extraction):

* ``local``: one unit after another, torch's default threads (the README's command);
* ``local --threads-per-unit 1``: the same on one thread (the reference for identical values);
* ``ray --threads-per-unit 1``: units as Ray tasks, as many at once as the machine has cores.

Prints the wall times, the speed-up of ray over each local run (goal ≥ 1.5 on 2 cores against the default local
run), and whether ray's ``value`` column equals the one-thread local run's (it should, bit for bit).

Usage: python benchmarks/launcher_speedup.py [--suite quick] [--extra ...]   (about 6–8 minutes for quick)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

KEYS = ["track", "model", "datamodule", "seed", "metric"]


def _run(suite: str, out: Path, extra: list[str]) -> float:
    env = {**os.environ, "BENCH_CACHE_DIR": str(out / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", suite, "--out", str(out / "run"),
                           "--json", *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(extra) or 'local'} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def _values(out: Path) -> pd.Series:
    return pd.read_csv(out / "run" / "results.csv").sort_values(KEYS)["value"].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `bench run` arguments")
    args = parser.parse_args()
    variants = {
        "local": [],
        "local, 1 thread/unit": ["--threads-per-unit", "1"],
        f"ray, {os.cpu_count()} workers × 1 thread": ["--launcher", "ray", "--threads-per-unit", "1"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for i, (name, extra) in enumerate(variants.items()):
            walls[name] = _run(args.suite, Path(tmp) / str(i), extra + args.extra)
            print(f"{name:28s} {walls[name]:7.1f} s", flush=True)
        ray_name = list(variants)[2]
        for name in list(variants)[:2]:
            print(f"speed-up of ray over {name!r}: {walls[name] / walls[ray_name]:.2f}×")
        same = _values(Path(tmp) / "1").equals(_values(Path(tmp) / "2"))
        print(f"ray values equal the 1-thread local run's: {same}")


if __name__ == "__main__":
    main()
