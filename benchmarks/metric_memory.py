"""Peak memory of accumulating metric states: FID (running sums) vs KID, IS and PRC (which keep every input).

Each configuration (metric × N) runs in a fresh Python process (this script re-invoked with ``--child``), so
one measurement's allocations cannot hide another's. The child builds the metric, then reads
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak resident set size, KiB on Linux) before and after feeding
N real and N generated features of dimension D in batches of 500 (IS: the logits of N generated images, K = 1008,
Inception's) (``update`` only; ``compute`` is not called).
The growth of the peak is the memory the states and the update path needed. Batches are drawn inside the
child, one at a time, so the inputs themselves add at most one batch.

Expected: FID's growth is ~independent of N (float64 sums of size D and D×D per set: 2 × 32 MiB at D=2048);
KID keeps float64 copies of every feature (2 × N × D × 8 bytes: ~625 MiB at N=20k), PRC float32 ones, IS the
logits (N × K; the splits need all of them).

Usage: python benchmarks/metric_memory.py [--ns 1000 20000] [--dim 2048] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

METRICS = ("fid", "kid", "is", "prc")
IS_CLASSES = 1008  # inception-v3-compat's logits_unbiased


def child(metric_name: str, n: int, dim: int, batch: int) -> dict[str, float]:
    """Feeds one metric and returns the peak-RSS growth in MiB (run in a fresh process)."""
    from bench.metrics import METRICS as REGISTRY
    from bench.metrics.base import MetricContext

    metric = REGISTRY.get(metric_name).build(MetricContext(num_features=dim))
    gen = torch.Generator().manual_seed(0)
    torch.randn(batch, dim, generator=gen)  # warm the allocator / RNG paths outside the measurement
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if metric.input_kind == "logits":  # IS: logits of the N generated images only
        for start in range(0, n, batch):
            metric.update(torch.randn(min(batch, n - start), IS_CLASSES, generator=gen))  # (b, K) float32
    else:
        for real in (True, False):
            for start in range(0, n, batch):
                metric.update(torch.randn(min(batch, n - start), dim, generator=gen), real=real)  # (b, D) float32
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"before_mib": before / 1024, "after_mib": after / 1024, "growth_mib": (after - before) / 1024}


def measure(metric_name: str, n: int, dim: int, batch: int) -> dict[str, float]:
    """Runs :func:`child` in a fresh interpreter and parses its JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", metric_name, str(n), "--dim", str(dim)]
    out = subprocess.run(cmd + ["--batch", str(batch)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("METRIC", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--ns", type=int, nargs=2, default=[1000, 20000], help="small and large N")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.dim, args.batch)))
        return

    small, large = args.ns
    print(f"D={args.dim}, batches of {args.batch}, N real + N generated features per run, one process per row")
    print(f"{'metric':<6} {'N':>6} {'peak before MiB':>16} {'peak after MiB':>15} {'growth MiB':>11}")
    growth: dict[tuple[str, int], float] = {}
    for name in METRICS:
        for n in (small, large):
            r = measure(name, n, args.dim, args.batch)
            growth[name, n] = r["growth_mib"]
            print(f"{name:<6} {n:>6} {r['before_mib']:>16.1f} {r['after_mib']:>15.1f} {r['growth_mib']:>11.1f}", flush=True)
    print(f"\ngrowth ratio N={large} / N={small} (N ratio {large / small:g}):")
    for name in METRICS:
        ratio = growth[name, large] / max(growth[name, small], 1e-9)
        print(f"  {name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
