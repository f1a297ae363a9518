"""Fréchet distance between Gaussian fits of real and generated features (FID when the backbone is Inception).

Written here rather than taken from torchmetrics' ``FrechetInceptionDistance`` because that class couples the
statistics to its own feature extractor and image preprocessing, while the suite feeds cached features from any
registered backbone. The statistics are float64 running sums (memory independent of N), reduced across
processes by summation; the matrix square-root term is computed from the eigenvalues of a symmetric PSD matrix
(a Cholesky factor of one covariance, then ``eigvalsh``), which cannot produce the complex values that
``scipy.linalg.sqrtm`` does on rank-deficient covariances.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric

from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS


def psd_factor(sigma: torch.Tensor) -> torch.Tensor:
    """A factor B with sigma = B Bᵀ of a symmetric positive semi-definite matrix, in float64.

    Cholesky when ``sigma`` is positive definite (fast, backward stable even when ill-conditioned). A
    rank-deficient covariance (fewer samples than dimensions) has no Cholesky factor; then LAPACK's pivoted
    Cholesky ``dpstrf`` (through scipy; torch has no binding) gives B of shape (D, r) with r the detected rank.

    Args:
        sigma: (D, D) symmetric PSD matrix.

    Returns:
        (D, D) lower-triangular factor, or (D, r) in the rank-deficient case, on ``sigma``'s device.
    """
    sigma = sigma.double()
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0:
        return factor
    from scipy.linalg.lapack import dpstrf

    c, piv, rank, _ = dpstrf(sigma.cpu().numpy(), lower=1)  # Pᵀ sigma P = L Lᵀ, L (D, rank) in tril(c)
    lower = torch.from_numpy(c).tril()[:, :rank]
    b = torch.empty_like(lower)
    b[torch.from_numpy(piv).long() - 1] = lower  # undo the pivoting: sigma = (P L)(P L)ᵀ
    return b.to(sigma.device)


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """tr(sqrtm(sigma1 @ sigma2)) for covariance matrices, in float64.

    With sigma1 = B Bᵀ, sigma1 @ sigma2 has the same non-zero eigenvalues as Bᵀ sigma2 B, which is symmetric PSD:
    the trace is the sum of the square roots of its (real, non-negative) eigenvalues. Only eigenvalues are needed
    (``eigvalsh``), never eigenvectors, and no complex arithmetic, so rank-deficient covariances are handled.
    """
    b = psd_factor(sigma1)  # (D, r)
    middle = b.T @ sigma2.double() @ b  # (r, r)
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
        return "float64 moments,unbiased covariance,trace sqrt via cholesky+eigvalsh"


@METRICS.register("fd")
class FD(FID):
    """Fréchet distance on any feature backbone (``fid`` is ``fd`` on Inception); lower is better."""
