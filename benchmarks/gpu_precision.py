"""One run unit at precision 32 vs 16-mixed vs bf16-mixed on a CUDA device, and a Ray fan-out over GPUs.

The device check of the issue "suites that survive crashes and scale out": the script a session runs, in one
call, on a lent GPU machine. For each precision it runs ``bench run`` of a small suite (``dcgan`` and ``vae`` on
the embedded ``digits`` at 16×16, 1 seed, ``--accelerator gpu --devices 1``) in a fresh output folder and prints,
per model:

* ``train_s``: the unit's wall time (training + scoring; the suite's ``wall_s`` column) and its ratio to
  precision 32;
* ``peak_mb``: peak allocated CUDA memory of the unit (the suite's ``peak_mem_mb`` on CUDA) and its ratio;
* the metric values (``fid``, ``kid``, ``mse``) and their relative difference from precision 32 — mixed
  precision changes the numbers; the size of the change is what a user trading bit-identity for speed must know.

With ``--ray`` and more than one visible GPU it also runs the same suite with 3 seeds as Ray tasks of one GPU each
(``--launcher ray --devices 1``) against ``--launcher local`` and prints the speed-up and whether the values
equal (they should, bit for bit, with ``deterministic: true``).

Without a CUDA device it prints one line saying so and exits 0 (``--accelerator cpu --precisions 32,bf16-mixed``
runs the same code path on the CPU, which is how it is tested here).

Usage::

    python benchmarks/gpu_precision.py [--precisions 32,16-mixed,bf16-mixed] [--epochs 5] [--ray]
        [--accelerator gpu]
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
import torch
import yaml

KEYS = ["track", "model", "datamodule", "seed", "metric"]
METRICS = ["fid", "kid", "mse"]


def suite_file(folder: Path, epochs: int, seeds: list[int]) -> Path:
    """A small suite YAML: dcgan + vae on 16×16 digits, FID/KID of 512 samples on EfficientNet-Lite0 at 128 px."""
    spec = {
        "name": "gpu-precision",
        "description": "precision check: dcgan and vae on 16x16 digits",
        "seeds": seeds,
        "eval": {"backbone_size": 128, "n_fake": 512, "batch_size": 256, "kid_subsets": 10,
                 "kid_subset_size": 256, "reference": False},
        "trainer": {"max_epochs": epochs},
        "tracks": [{"name": "generation", "primary_metric": "fid", "metrics": METRICS,
                    "datamodules": {"digits": {"image_size": 16, "batch_size": 64}},
                    "models": {"dcgan": {"latent_dim": 32, "width": 32}, "vae": {"latent_dim": 16, "width": 32}}}],
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def bench_run(suite: Path, out: Path, extra: list[str]) -> tuple[pd.DataFrame, float]:
    """Runs ``bench run`` in a subprocess; returns its results.csv and the command's wall time."""
    env = {**os.environ, "BENCH_CACHE_DIR": str(out.parent / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", str(suite), "--out", str(out),
                           "--json", *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench run {' '.join(extra)} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return pd.read_csv(out / "results.csv"), wall


def precision_table(results: dict[str, pd.DataFrame]) -> str:
    """Per model and precision: wall, peak memory, metric values, and ratios / relative gaps against the first."""
    base_name = next(iter(results))
    base = results[base_name].set_index(["model", "metric"])
    lines = [f"{'model':<6} {'precision':<11} {'wall_s':>7} {'×':>5} {'peak_mb':>8} {'×':>5}  "
             + "  ".join(f"{m:>10} {'rel':>8}" for m in METRICS)]
    for name, frame in results.items():
        rows = frame.set_index(["model", "metric"])
        for model in sorted(frame["model"].unique()):
            wall = float(rows.loc[(model, METRICS[0]), "wall_s"])
            peak = float(rows.loc[(model, METRICS[0]), "peak_mem_mb"])
            wall0 = float(base.loc[(model, METRICS[0]), "wall_s"])
            peak0 = float(base.loc[(model, METRICS[0]), "peak_mem_mb"])
            cells = []
            for m in METRICS:
                if (model, m) not in rows.index:  # e.g. a GAN has no reconstruction
                    cells.append(f"{'—':>10} {'':>8}")
                    continue
                v, v0 = float(rows.loc[(model, m), "value"]), float(base.loc[(model, m), "value"])
                cells.append(f"{v:>10.4g} {(v - v0) / abs(v0) if v0 else float('nan'):>+8.1e}")
            lines.append(f"{model:<6} {name:<11} {wall:>7.1f} {wall / wall0:>5.2f} {peak:>8.0f} "
                         f"{peak / peak0 if peak0 else float('nan'):>5.2f}  " + "  ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="32,16-mixed,bf16-mixed")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--ray", action="store_true", help="also the Ray fan-out over GPUs (needs 2+ GPUs)")
    args = parser.parse_args()
    if args.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run on a GPU machine, or --accelerator cpu "
              "--precisions 32,bf16-mixed to exercise the script)")
        return
    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name(0)} × {torch.cuda.device_count()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite = suite_file(folder, args.epochs, [0])
        results = {}
        for precision in args.precisions.split(","):
            frame, wall = bench_run(suite, folder / f"p{precision}",
                                    ["--accelerator", args.accelerator, "--devices", "1", "--precision", precision])
            results[precision] = frame
            print(f"precision {precision}: {wall:.1f} s for the command", flush=True)
        print(precision_table(results))
        gpus = torch.cuda.device_count()
        if args.ray and gpus >= 2:
            (folder / "ray").mkdir()
            suite3 = suite_file(folder / "ray", args.epochs, [0, 1, 2])
            local, wall_local = bench_run(suite3, folder / "ray" / "local", ["--accelerator", "gpu", "--devices", "1"])
            ray, wall_ray = bench_run(suite3, folder / "ray" / "ray",
                                      ["--accelerator", "gpu", "--devices", "1", "--launcher", "ray"])
            same = local.sort_values(KEYS)["value"].reset_index(drop=True).equals(
                ray.sort_values(KEYS)["value"].reset_index(drop=True))
            print(f"ray over {gpus} GPUs: {wall_ray:.1f} s vs local {wall_local:.1f} s → "
                  f"{wall_local / wall_ray:.2f}×; values equal: {same}")
        elif args.ray:
            print(f"ray fan-out skipped: {gpus} GPU(s) visible, it needs 2 or more")


if __name__ == "__main__":
    main()
