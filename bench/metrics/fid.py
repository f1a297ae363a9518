"""Fréchet distance between Gaussian fits of real and generated features (FID when the backbone is Inception).

Written here rather than taken from torchmetrics' ``FrechetInceptionDistance`` because that class couples the
statistics to its own feature extractor and image preprocessing, while the suite feeds cached features from any
registered backbone. The statistics are float64 running sums (memory independent of N), reduced across
processes by summation; the matrix square-root term is computed on a symmetric PSD matrix with ``eigh``, which
cannot produce the complex values that ``scipy.linalg.sqrtm`` does on rank-deficient covariances.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric

from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS


def _sqrtm_psd(mat: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues from round-off → 0)."""
    eigvals, eigvecs = torch.linalg.eigh(mat)
    return (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """tr(sqrtm(sigma1 @ sigma2)) for covariance matrices, in float64.

    sigma1 @ sigma2 is similar to S @ sigma2 @ S with S = sqrtm(sigma1), which is symmetric PSD, so the trace is
    the sum of the square roots of its (real, non-negative) eigenvalues.
    """
    s1 = _sqrtm_psd(sigma1.double())
    middle = s1 @ sigma2.double() @ s1
    middle = (middle + middle.T) / 2  # symmetrize round-off
    return torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """||mu1 - mu2||² + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2)), in float64.

    Args:
        mu1: (D,) mean of the first Gaussian. sigma1: (D, D) its covariance.
        mu2: (D,) mean of the second Gaussian. sigma2: (D, D) its covariance.
    """
    mu1, mu2, sigma1, sigma2 = mu1.double(), mu2.double(), sigma1.double(), sigma2.double()
    diff = mu1 - mu2
    return diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)


def moments_from_sums(total: torch.Tensor, outer: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) from the running sums Σx (D,), Σxxᵀ (D, D) and the count n."""
    mu = total / n
    cov = (outer - n * torch.outer(mu, mu)) / (n - 1)
    return mu, cov


@METRICS.register("fid")
class FID(BenchMetric, Metric):
    """Fréchet distance of backbone features; lower is better.

    Args:
        num_features: Feature dimension D.
    """

    input_kind = "features"
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_features = num_features
        for which in ("real", "fake"):
            self.add_state(f"{which}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{which}_outer", torch.zeros(num_features, num_features, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(f"{which}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @classmethod
    def build(cls, ctx: MetricContext) -> FID:
        return cls(num_features=ctx.num_features)

    def update(self, features: torch.Tensor, real: bool) -> None:  # features (N, D)
        x = features.double()
        which = "real" if real else "fake"
        setattr(self, f"{which}_sum", getattr(self, f"{which}_sum") + x.sum(0))
        setattr(self, f"{which}_outer", getattr(self, f"{which}_outer") + x.T @ x)
        setattr(self, f"{which}_n", getattr(self, f"{which}_n") + x.shape[0])

    def compute(self) -> torch.Tensor:
        if self.real_n < 2 or self.fake_n < 2:
            raise ValueError("FID needs at least 2 real and 2 generated samples")
        if min(self.real_n, self.fake_n) < self.num_features:
            warnings.warn(
                f"FID with {int(self.real_n)} real / {int(self.fake_n)} generated samples, fewer than the "
                f"{self.num_features} feature dimensions: the covariances are rank-deficient and FID is strongly "
                "biased upwards at this sample size; compare models at equal n only, or use KID (unbiased).",
                stacklevel=2,
            )
        mu1, sigma1 = moments_from_sums(self.real_sum, self.real_outer, self.real_n)
        mu2, sigma2 = moments_from_sums(self.fake_sum, self.fake_outer, self.fake_n)
        return frechet_distance(mu1, sigma1, mu2, sigma2)

    def protocol(self) -> str:
        return "float64 moments,unbiased covariance,trace sqrt via eigh"
