"""Speed and agreement of the suite's tr(sqrtm(Σ1 Σ2)) (Cholesky + eigvalsh) against scipy.linalg.sqrtm.

For each dimension d and each covariance kind (full rank: estimated from 1.5 d samples; rank deficient: from
d / 4 samples) two random covariances are drawn and both implementations run on the same float64 matrices:

* ours:  bench.metrics.fid.trace_sqrt_product(Σ1, Σ2)
* scipy: np.trace(scipy.linalg.sqrtm(Σ1 @ Σ2).real)   (the pytorch-fid / TTUR formula)

Printed: median wall time of each (over ``--reps`` repetitions; scipy's sqrtm at d=2048 takes ~45 s on two
cores, so that size defaults to one repetition), the speed ratio scipy / ours, and the relative differences of
the trace and of the full FID (bench.metrics.fid.frechet_distance against the scipy formula).

Both libraries run single-threaded by default (``--threads``): on a small shared machine torch's OpenMP pool
slows LAPACK calls down tens of times when another process holds a core, which would make the ratio meaningless.

Usage: python benchmarks/fid_sqrtm.py [--dims 512 2048] [--reps 3] [--reps-large 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # thread pools are sized at import time
    _threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch

from bench.metrics.fid import frechet_distance, trace_sqrt_product


def gaussian_stats(rng: np.random.Generator, n: int, d: int, scale: float, shift: float) -> tuple[np.ndarray, ...]:
    """Mean (d,) and covariance (d, d) of n correlated Gaussian samples; rank min(n - 1, d)."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)  # (d, d)
    x = rng.standard_normal((n, d)) @ mix * scale + shift  # (n, d)
    return x.mean(0), np.cov(x, rowvar=False)


def median_time(fn: Callable[[], float], reps: int) -> tuple[float, float]:
    """(median seconds, last value) of ``reps`` calls."""
    times, value = [], float("nan")
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def scipy_fid(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, tr_covmean: float) -> float:
    """The classic FID formula, given scipy's trace term."""
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--reps", type=int, default=3, help="repetitions for d < 2048")
    parser.add_argument("--reps-large", type=int, default=1, help="repetitions for d >= 2048")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads of both libraries")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), scipy {scipy.__version__}, float64")
    header = f"{'d':>5} {'covariances':<22} {'reps':>4} {'ours s':>8} {'scipy s':>8} {'speedup':>8} "
    header += f"{'trace rel diff':>15} {'FID rel diff':>13} {'FID ours':>12}"
    print(header)
    for d in args.dims:
        reps = args.reps if d < 2048 else args.reps_large
        for kind, n in (("full rank (n=1.5d)", d + d // 2), ("rank-deficient (n=d/4)", d // 4)):
            rng = np.random.default_rng(d + n)
            mu1, s1 = gaussian_stats(rng, n, d, scale=1.0, shift=0.0)
            mu2, s2 = gaussian_stats(rng, n, d, scale=1.3, shift=0.1)
            t1, t2 = torch.from_numpy(s1), torch.from_numpy(s2)
            ours_s, ours_tr = median_time(lambda: trace_sqrt_product(t1, t2).item(), reps)
            scipy_s, scipy_tr = median_time(lambda: float(np.trace(scipy.linalg.sqrtm(s1 @ s2).real)), reps)
            fid_ours = frechet_distance(torch.from_numpy(mu1), t1, torch.from_numpy(mu2), t2).item()
            fid_scipy = scipy_fid(mu1, s1, mu2, s2, scipy_tr)
            print(
                f"{d:>5} {kind:<22} {reps:>4} {ours_s:>8.3f} {scipy_s:>8.3f} {scipy_s / ours_s:>7.1f}x "
                f"{abs(ours_tr - scipy_tr) / abs(scipy_tr):>15.2e} {abs(fid_ours - fid_scipy) / abs(fid_scipy):>13.2e} "
                f"{fid_ours:>12.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
