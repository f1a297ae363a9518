"""Kernel distance (KID when the backbone is Inception): unbiased MMD² with the cubic polynomial kernel.

Follows torch-fidelity's ``metric_kid.py``: k(x, y) = (xᵀy / D + 1)³, the unbiased MMD² estimate averaged over
random subsets drawn without replacement, each subset drawn as torch-fidelity draws it
(``np.random.RandomState(seed)``, then ``choice(n_fake, size, replace=False)`` and ``choice(n_real, size,
replace=False)`` per subset: its order with ``input1`` the generated set, as its docs use it), so with seed 2020
(torch-fidelity's default) the subsets are torch-fidelity's. The
kernel is evaluated in float64 (torch-fidelity: float32 numpy, ~1e-5 relative off on 2048-d features). Written
here so it takes features from any registered backbone and the run's seed; when the subset size exceeds the
samples it is clamped (torch-fidelity refuses) and the protocol says so.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics.base import BenchMetric, Estimate, MetricContext
from bench.metrics.registry import METRICS


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """Unbiased MMD² between samples ``x`` (m, D) and ``y`` (m, D) under k(a, b) = (aᵀb / D + coef0)^degree."""
    m, d = x.shape
    gamma = 1.0 / d
    k_xx = (x @ x.T * gamma + coef0) ** degree  # (m, m)
    k_yy = (y @ y.T * gamma + coef0) ** degree  # (m, m)
    k_xy = (x @ y.T * gamma + coef0) ** degree  # (m, m)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return term_xx + term_yy - 2 * k_xy.mean()


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (over subsets, as torch-fidelity) of the unbiased polynomial MMD², in float64.

    Args:
        real: (N_r, D) real features. fake: (N_f, D) generated features.
        subsets: Number of random subsets. subset_size: Size of each; clamped to min(N_r, N_f) with a warning.
        seed: Seed of the subset draws (``np.random.RandomState``; torch-fidelity's default is 2020).
    """
    real, fake = real.double(), fake.double()
    n = min(len(real), len(fake))
    if n < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated samples, got {len(real)} and {len(fake)}")
    if subset_size > n:
        warnings.warn(f"KID subset_size {subset_size} > available samples; clamped to {n}", stacklevel=2)
        subset_size = n
    rng = np.random.RandomState(seed)
    values = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        # torch-fidelity's order with input1 = the generated set (its convention): fake subset first
        idx_f = torch.from_numpy(rng.choice(len(fake), subset_size, replace=False))
        idx_r = torch.from_numpy(rng.choice(len(real), subset_size, replace=False))
        values[i] = polynomial_mmd2(real[idx_r], fake[idx_f])
    std = values.std(unbiased=False) if subsets > 1 else torch.zeros((), dtype=torch.float64)
    return values.mean(), std


@METRICS.register("kid")
class KID(BenchMetric, Metric):
    """Kernel distance of backbone features (mean over seeded subsets); lower is better.

    Args:
        subsets: Number of subsets. subset_size: Samples per subset. seed: Seed of the subset draws.
    """

    input_kind = "features"
    higher_is_better = False
    full_state_update = False

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 2020, **kwargs) -> None:
        super().__init__(**kwargs)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        #: The subset size used by the last compute (the asked one, or the sample size it was clamped to).
        self.used_subset_size = subset_size
        self.last_std = torch.zeros((), dtype=torch.float64)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> KID:
        return cls(subsets=ctx.kid_subsets, subset_size=ctx.kid_subset_size, seed=ctx.seed)

    def update(self, features: torch.Tensor, real: bool) -> None:  # features (N, D)
        (self.real_features if real else self.fake_features).append(features.double())

    def compute(self) -> torch.Tensor:
        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        self.used_subset_size = min(self.subset_size, len(real), len(fake))
        mean, self.last_std = kernel_distance(real, fake, self.subsets, self.subset_size, self.seed)
        return mean

    def values(self, name: str) -> dict[str, Estimate]:
        mean = float(self.compute())
        return {name: Estimate(mean, float(self.last_std))}

    def protocol(self) -> str:
        size = str(self.used_subset_size)
        if self.used_subset_size < self.subset_size:
            size += f" (asked {self.subset_size}; clamped to the sample size)"
        return (f"kernel=poly3,subsets={self.subsets},subset_size={size},subset_draw=numpy choice,"
                f"seed={self.seed}")


@METRICS.register("kd")
class KD(KID):
    """Kernel distance on any feature backbone (``kid`` is ``kd`` on Inception); lower is better."""
