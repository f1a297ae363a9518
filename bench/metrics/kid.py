"""Kernel distance (KID when the backbone is Inception): unbiased MMD² with the cubic polynomial kernel.

Follows torch-fidelity's ``metric_kid.py``: k(x, y) = (xᵀy / D + 1)³, the unbiased MMD² estimate averaged over
random subsets drawn without replacement. Written here so the subsets are drawn from a seeded generator (the
same seed gives the same value) and so it takes features from any registered backbone.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics.base import BenchMetric, MetricContext
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
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (over subsets) of the unbiased polynomial MMD², in float64.

    Args:
        real: (N_r, D) real features. fake: (N_f, D) generated features.
        subsets: Number of random subsets. subset_size: Size of each; clamped to min(N_r, N_f) with a warning.
        seed: Seed of the subset draws.
    """
    real, fake = real.double(), fake.double()
    n = min(len(real), len(fake))
    if n < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated samples, got {len(real)} and {len(fake)}")
    if subset_size > n:
        warnings.warn(f"KID subset_size {subset_size} > available samples; clamped to {n}", stacklevel=2)
        subset_size = n
    gen = torch.Generator().manual_seed(seed)
    values = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        idx_r = torch.randperm(len(real), generator=gen)[:subset_size]
        idx_f = torch.randperm(len(fake), generator=gen)[:subset_size]
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

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> KID:
        return cls(subsets=ctx.kid_subsets, subset_size=ctx.kid_subset_size, seed=ctx.seed)

    def update(self, features: torch.Tensor, real: bool) -> None:  # features (N, D)
        (self.real_features if real else self.fake_features).append(features.double())

    def compute(self) -> torch.Tensor:
        mean, self.last_std = kernel_distance(
            dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features), self.subsets, self.subset_size, self.seed
        )
        return mean

    def protocol(self) -> str:
        return f"kernel=poly3,subsets={self.subsets},subset_size={self.subset_size},seed={self.seed}"
