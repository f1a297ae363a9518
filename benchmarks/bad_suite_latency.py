"""How long a bad suite file costs before its one-line error (goal: ≤ 2 s on a 2-core CPU).

Runs ``bench run --suite BAD.yaml`` in fresh processes for a few kinds of bad file (an unknown model, a value out
of bounds, a path-escaping track name, invalid YAML, a duplicate key), best of ``--reps``, and prints each time
next to the baselines measured in the same run: a bare ``python -c pass`` and ``python -c "import torch"`` (what
the check took before it ran ahead of the heavy imports: about 7.6 s, which also imported Lightning).

Usage: python benchmarks/bad_suite_latency.py [--reps 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOOD = """name: bad
seeds: [0]
tracks:
  - name: gen
    primary_metric: fid
    metrics: [fid]
    datamodules: {digits: {image_size: 16}}
    models: {dcgan: {width: 8}}
"""
BAD = {
    "unknown model": GOOD.replace("dcgan:", "dcgann:"),
    "out of bounds": GOOD.replace("width: 8", "width: -8"),
    "escaping track": GOOD.replace("name: gen", "name: ../../escaped"),
    "invalid YAML": GOOD.replace("metrics: [fid]", "metrics: [fid"),
    "duplicate key": GOOD + "seeds: [1]\n",
}


def best_of(argv: list[str], reps: int, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    best, done = float("inf"), None
    for _ in range(reps):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
        best = min(best, time.perf_counter() - start)
    return best, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare, _ = best_of([sys.executable, "-c", "pass"], args.reps, folder)
        torch_import, _ = best_of([sys.executable, "-c", "import torch"], args.reps, folder)
        print(f"baseline  python -c pass        {bare:6.2f} s")
        print(f"baseline  python -c import torch {torch_import:6.2f} s")
        for name, text in BAD.items():
            path = folder / f"{name.replace(' ', '-')}.yaml"
            path.write_text(text)
            seconds, done = best_of([sys.executable, "-m", "bench", "run", "--suite", str(path), "--out",
                                     str(folder / "out")], args.reps, folder)
            line = done.stderr.strip().splitlines()
            ok = done.returncode == 2 and len(line) == 1 and not (folder / "out").exists()
            print(f"{name:15s} {seconds:6.2f} s  ({seconds / torch_import:.2f}x import torch)  exit "
                  f"{done.returncode}, {'one line' if ok else 'NOT one line'}: {line[-1][:90] if line else ''}")


if __name__ == "__main__":
    main()
