"""bench.metrics.fid: the Fréchet distance formula against scipy, and the FID metric against torchmetrics."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from bench.metrics.base import MetricContext
from bench.metrics.fid import FID, frechet_distance, moments_from_sums, psd_factor, trace_sqrt_product


def scipy_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The classic reference (pytorch-fid / TTUR): float64 scipy.linalg.sqrtm, real part."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_stats(rng, n, d, scale=1.0, shift=0.0):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * scale / np.sqrt(d) + shift
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n", [500, 20], ids=["full-rank", "rank-deficient"])
def test_formula_matches_scipy(n):
    """frechet_distance and trace_sqrt_product equal the scipy sqrtm reference (d=64) to 1e-6 relative."""
    rng = np.random.default_rng(n)
    mu1, s1 = gaussian_stats(rng, n, 64)
    mu2, s2 = gaussian_stats(rng, n, 64, scale=1.5, shift=0.3)
    if n < 64:
        assert np.linalg.matrix_rank(s1) == n - 1
    ref_trace = np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    ours_trace = trace_sqrt_product(torch.from_numpy(s1), torch.from_numpy(s2)).item()
    assert ours_trace == pytest.approx(ref_trace, rel=1e-6)
    t = [torch.from_numpy(a) for a in (mu1, s1, mu2, s2)]
    fid = frechet_distance(*t)
    assert fid.dtype == torch.float64
    assert fid.item() == pytest.approx(scipy_fid(mu1, s1, mu2, s2), rel=1e-6)


@pytest.mark.parametrize("n", [500, 20, 1], ids=["full-rank", "rank-deficient", "zero"])
def test_psd_factor_reconstructs_the_covariance(n):
    """sigma = B Bᵀ; Cholesky (square) when positive definite, pivoted Cholesky (D, rank) otherwise."""
    rng = np.random.default_rng(n)
    sigma = np.cov(rng.standard_normal((n, 32)), rowvar=False) if n > 1 else np.zeros((32, 32))
    b = psd_factor(torch.from_numpy(sigma))
    assert b.dtype == torch.float64
    assert b.shape == (32, min(max(n - 1, 0), 32))
    np.testing.assert_allclose((b @ b.T).numpy(), sigma, atol=1e-10)


def test_trace_one_rank_deficient_side():
    """Only the first covariance rank-deficient (the factored one), then only the second: both equal scipy."""
    rng = np.random.default_rng(7)
    _, low = gaussian_stats(rng, 10, 48)
    _, full = gaussian_stats(rng, 400, 48, scale=1.2)
    for s1, s2 in ((low, full), (full, low)):
        ref = np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
        assert trace_sqrt_product(torch.from_numpy(s1), torch.from_numpy(s2)).item() == pytest.approx(ref, rel=1e-6)


def test_formula_float32_inputs_computed_in_float64():
    """float32 statistics are promoted: the result equals the float64 computation on the same values."""
    rng = np.random.default_rng(3)
    mu1, s1 = gaussian_stats(rng, 300, 32)
    mu2, s2 = gaussian_stats(rng, 300, 32, shift=0.1)
    t32 = [torch.from_numpy(a).float() for a in (mu1, s1, mu2, s2)]
    t64 = [a.double() for a in t32]
    assert frechet_distance(*t32).item() == pytest.approx(frechet_distance(*t64).item(), rel=1e-12)


def test_moments_from_sums_match_numpy():
    """Mean and unbiased covariance from running sums equal numpy's."""
    x = torch.randn(50, 6, dtype=torch.float64)
    mu, cov = moments_from_sums(x.sum(0), x.T @ x, torch.tensor(50.0, dtype=torch.float64))
    np.testing.assert_allclose(mu.numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-10, atol=1e-12)


def features(seed, n, d, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def fid_of(real, fake, batch_size=None):
    metric = FID(num_features=real.shape[1])
    for x, is_real in ((real, True), (fake, False)):
        for chunk in x.split(batch_size or len(x)):
            metric.update(chunk, real=is_real)
    return metric.compute()


def test_fid_of_identical_sets_is_zero():
    """FID(x, x) ≈ 0 relative to the trace of the covariance."""
    x = features(0, 300, 16) * torch.linspace(0.5, 3, 16)
    value = fid_of(x, x).item()
    trace = torch.cov(x.T).trace().item()
    assert abs(value) < 1e-6 * trace


def test_fid_independent_of_batching():
    """One batch, batch size 1 and uneven chunks give the same value (float64 running sums)."""
    real, fake = features(1, 120, 8), features(2, 90, 8, shift=0.2)
    full = fid_of(real, fake).item()
    assert full > 0.01
    assert fid_of(real, fake, batch_size=1).item() == pytest.approx(full, rel=1e-9)
    assert fid_of(real, fake, batch_size=37).item() == pytest.approx(full, rel=1e-9)


def test_fid_accepts_float32_features():
    """float32 features accumulate in float64: same value as feeding float64."""
    real, fake = features(3, 100, 8).float(), features(4, 100, 8, shift=0.5).float()
    assert fid_of(real, fake).item() == pytest.approx(fid_of(real.double(), fake.double()).item(), rel=1e-12)


class Identity(nn.Module):
    """A torchmetrics "feature extractor" whose input already is the feature vector."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def test_fid_matches_torchmetrics():
    """Same features → same value as torchmetrics' FrechetInceptionDistance (identity extractor), rel 1e-5."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    d = 16
    real, fake = features(5, 200, d), features(6, 150, d, shift=0.3) * 1.2
    reference = FrechetInceptionDistance(feature=Identity(d))
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected = reference.compute().item()
    assert fid_of(real, fake).item() == pytest.approx(expected, rel=1e-5)


def test_fid_distinguishes_distributions():
    """A larger mean shift gives a larger FID (≈ ||Δμ||² for equal covariances)."""
    real = features(7, 400, 8)
    near, far = fid_of(real, features(8, 400, 8, shift=0.5)).item(), fid_of(real, features(8, 400, 8, shift=1.0)).item()
    assert near < far
    assert far == pytest.approx(8 * 1.0**2, rel=0.15)


def test_small_sample_warning():
    """n < D warns that FID is biased at that sample size; n ≥ D does not."""
    with pytest.warns(UserWarning, match="fewer than the 32 feature dimensions"):
        fid_of(features(9, 20, 32), features(10, 20, 32))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fid_of(features(9, 40, 32), features(10, 40, 32))


def test_too_few_samples_raise():
    """Fewer than 2 samples on either side raises ValueError."""
    metric = FID(num_features=4)
    metric.update(torch.randn(5, 4), real=True)
    metric.update(torch.randn(1, 4), real=False)
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute()


def test_build_and_declarations():
    """build() takes D from the context; FID is a lower-is-better feature metric."""
    metric = FID.build(MetricContext(num_features=12))
    assert metric.num_features == 12 and metric.real_outer.shape == (12, 12)
    assert metric.real_outer.dtype == torch.float64
    assert FID.higher_is_better is False and FID.input_kind == "features"
