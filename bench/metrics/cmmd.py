"""CMMD (Jayasumana et al., 2024, "Rethinking FID"): MMD with a Gaussian RBF kernel between feature sets.

Follows the official implementation (google-research ``cmmd/distance.py``): k(a, b) = exp(-γ ||a - b||²) with
γ = 1 / (2 σ²), σ = 10, and the *biased* (V-statistic) estimate

    CMMD = scale · (mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)),  scale = 1000,

where every mean runs over all pairs, the diagonal included, so two samples of one distribution score slightly
above 0 (the bias shrinks as 1/N). The official embeddings are unit-norm CLIP image embeddings; the features of
the track's backbone are L2-normalised here by default to match (``normalize=False`` keeps them as they are).

Computed in float64, in row blocks, so the extra memory is O(chunk × N) instead of O(N²).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS


def rbf_kernel_mean(a: torch.Tensor, b: torch.Tensor, gamma: float, chunk_size: int = 1024) -> torch.Tensor:
    """Mean of exp(-gamma ||a_i - b_j||²) over all pairs (i, j), diagonal included, as a float64 scalar.

    Args:
        a: (N, D) features. b: (M, D) features.
        gamma: Kernel coefficient 1 / (2 σ²).
        chunk_size: Rows of ``a`` per block; peak extra memory is about chunk_size × M float64.
    """
    a, b = a.double(), b.double()
    b_sq = (b * b).sum(1)  # (M,)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, len(a), chunk_size):
        block = a[start:start + chunk_size]  # (c, D)
        sq_dist = (block * block).sum(1)[:, None] + b_sq[None, :] - 2 * block @ b.T  # (c, M)
        total += torch.exp(-gamma * sq_dist.clamp_min(0)).sum()
    return total / (len(a) * len(b))


def cmmd(
    x: torch.Tensor, y: torch.Tensor, sigma: float = 10.0, scale: float = 1000.0, normalize: bool = True,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The official CMMD estimate between feature sets ``x`` and ``y`` (biased MMD², Gaussian RBF), float64.

    Args:
        x: (N, D) real features. y: (M, D) generated features.
        sigma: RBF bandwidth σ (γ = 1 / (2 σ²)). scale: Multiplier of the MMD² (1000 makes it readable).
        normalize: L2-normalise every feature row first (the official CLIP embeddings are unit-norm).
        chunk_size: Rows per kernel block.

    Returns:
        0-dim float64 tensor; 0 for identical sets, symmetric in ``x`` and ``y``.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) features, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) < 1 or len(y) < 1:
        raise ValueError(f"CMMD needs at least 1 real and 1 generated sample, got {len(x)} and {len(y)}")
    x, y = x.double(), y.double()
    if normalize:
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    gamma = 1.0 / (2 * sigma**2)
    k_xx = rbf_kernel_mean(x, x, gamma, chunk_size)
    k_yy = rbf_kernel_mean(y, y, gamma, chunk_size)
    k_xy = rbf_kernel_mean(x, y, gamma, chunk_size)
    return scale * (k_xx + k_yy - 2 * k_xy)


@METRICS.register("cmmd")
class CMMD(BenchMetric, Metric):
    """CMMD between real and generated backbone features; lower is better.

    Keeps every feature (memory grows with N, like KID); the kernel sums are computed in blocks.

    Args:
        sigma: RBF bandwidth. scale: Output multiplier. normalize: L2-normalise the features first.
        chunk_size: Rows per kernel block.
    """

    input_kind = "features"
    higher_is_better = False
    full_state_update = False

    def __init__(self, sigma: float = 10.0, scale: float = 1000.0, normalize: bool = True, chunk_size: int = 1024,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigma, self.scale, self.normalize, self.chunk_size = sigma, scale, normalize, chunk_size
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> CMMD:
        return cls()

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.Features("real"), rq.Features("fake"))

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        self.update(inputs[rq.Features("real")], real=True)
        self.update(inputs[rq.Features("fake")], real=False)

    def update(self, features: torch.Tensor, real: bool) -> None:  # features (N, D)
        (self.real_features if real else self.fake_features).append(features.detach().double())

    def compute(self) -> torch.Tensor:
        return cmmd(dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features), self.sigma, self.scale,
                    self.normalize, self.chunk_size)

    def protocol(self) -> str:
        features = "l2-normalised" if self.normalize else "raw"
        return (f"kernel=gaussian-rbf,sigma={self.sigma:g},scale={self.scale:g},"
                f"estimator=biased V-statistic (diagonal included),features={features},dtype=float64")
