"""bench.metrics.kid: the unbiased polynomial MMD² against torchmetrics, seeding, and the subset-size clamp."""

import warnings

import pytest
import torch
from torch import nn

from bench.metrics.base import MetricContext
from bench.metrics.kid import KID, kernel_distance, polynomial_mmd2


class Identity(nn.Module):
    """A torchmetrics "feature extractor" whose input already is the feature vector."""

    def forward(self, x):
        return x


def features(seed, n, d, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_matches_torchmetrics_full_subset():
    """subsets=1, subset_size=n equals torchmetrics' KernelInceptionDistance on the same features (rel 1e-6).

    With a subset as large as the set, the random permutation does not change the value.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    n, d = 80, 24
    real, fake = features(0, n, d), features(1, n, d, shift=0.3)
    reference = KernelInceptionDistance(feature=Identity(), subsets=1, subset_size=n)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected, _ = reference.compute()
    mean, std = kernel_distance(real, fake, subsets=1, subset_size=n, seed=0)
    assert mean.dtype == torch.float64
    assert mean.item() == pytest.approx(expected.item(), rel=1e-6)
    assert std.item() == 0.0


def test_mmd2_matches_explicit_formula():
    """polynomial_mmd2 equals the unbiased estimator written out with loops over pairs."""
    x, y = features(2, 7, 3), features(3, 7, 3, shift=1.0)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert polynomial_mmd2(x, y).item() == pytest.approx((xx + yy - 2 * xy).item(), rel=1e-10)


def test_unbiased_near_zero_for_same_distribution():
    """Two samples of one distribution score ≈ 0 (unbiased, can be negative); a shifted one scores clearly more."""
    same, _ = kernel_distance(features(4, 200, 8), features(5, 200, 8), subsets=10, subset_size=100)
    shifted, _ = kernel_distance(features(4, 200, 8), features(5, 200, 8, shift=1.0), subsets=10, subset_size=100)
    assert abs(same.item()) < 0.05 * shifted.item()


def test_seeded_subsets():
    """The same seed gives the identical value; a different seed (usually) a different one."""
    real, fake = features(6, 100, 8), features(7, 100, 8, shift=0.2)
    a = kernel_distance(real, fake, subsets=5, subset_size=30, seed=0)
    b = kernel_distance(real, fake, subsets=5, subset_size=30, seed=0)
    c = kernel_distance(real, fake, subsets=5, subset_size=30, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].item() != c[0].item()
    assert a[1].item() > 0  # several subsets → a spread


def test_seed_independent_of_global_rng():
    """The subset draws do not use (or disturb) torch's global RNG."""
    real, fake = features(8, 60, 4), features(9, 60, 4, shift=0.2)
    torch.manual_seed(0)
    a = kernel_distance(real, fake, subsets=3, subset_size=20, seed=5)
    after = torch.rand(1)
    torch.manual_seed(123)
    b = kernel_distance(real, fake, subsets=3, subset_size=20, seed=5)
    torch.manual_seed(0)
    assert torch.equal(a[0], b[0]) and torch.equal(torch.rand(1), after)


def test_subset_size_clamp_warns():
    """subset_size larger than the samples warns and clamps to min(N_r, N_f)."""
    real, fake = features(10, 40, 4), features(11, 30, 4)
    with pytest.warns(UserWarning, match="clamped to 30"):
        clamped = kernel_distance(real, fake, subsets=2, subset_size=1000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        explicit = kernel_distance(real, fake, subsets=2, subset_size=30, seed=0)
    assert torch.equal(clamped[0], explicit[0])


def test_too_few_samples_raise():
    with pytest.raises(ValueError, match="at least 2"):
        kernel_distance(features(0, 1, 4), features(1, 5, 4))


def test_metric_class_matches_functional_and_batching():
    """KID.update in chunks then compute equals kernel_distance on the concatenated features; std is kept."""
    real, fake = features(12, 64, 8), features(13, 50, 8, shift=0.4)
    metric = KID.build(MetricContext(seed=3, kid_subsets=4, kid_subset_size=25))
    for chunk in real.split(10):
        metric.update(chunk, real=True)
    for chunk in fake.float().split(7):
        metric.update(chunk, real=False)
    mean, std = kernel_distance(real, fake.float().double(), subsets=4, subset_size=25, seed=3)
    assert metric.compute().item() == pytest.approx(mean.item(), rel=1e-12)
    assert metric.last_std.item() == pytest.approx(std.item(), rel=1e-12)
    assert metric.protocol() == "kernel=poly3,subsets=4,subset_size=25,subset_draw=numpy choice,seed=3"
    assert metric.values("kid") == {"kid": (pytest.approx(mean.item(), rel=1e-12), pytest.approx(std.item()))}


def test_clamped_subset_size_is_in_protocol():
    """A subset size above the samples is clamped with a warning, and the protocol records what was used."""
    metric = KID.build(MetricContext(seed=0, kid_subsets=2, kid_subset_size=1000))
    metric.update(features(1, 30, 4), real=True)
    metric.update(features(2, 20, 4), real=False)
    with pytest.warns(UserWarning, match="clamped"):
        metric.values("kid")
    assert "subset_size=20 (asked 1000; clamped to the sample size)" in metric.protocol()


def test_subsets_are_torch_fidelitys():
    """The subsets are drawn as torch-fidelity draws them with input1 = the generated set: equal to
    kid_features_to_metric at its seed in float64 (its float32 kernel aside), for subsets smaller than the samples,
    and different when the sets are swapped (the draw order matters)."""
    tf = pytest.importorskip("torch_fidelity.metric_kid")
    real, fake = features(5, 40, 6).double(), features(6, 30, 6, shift=0.2).double()
    mean, std = kernel_distance(real, fake, subsets=7, subset_size=11, seed=2020)
    ref = tf.kid_features_to_metric(fake, real, kid_subsets=7, kid_subset_size=11, verbose=False, rng_seed=2020,
                                    kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                    kid_kernel_poly_coef0=1)
    assert mean.item() == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert std.item() == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-10)
    swapped = tf.kid_features_to_metric(real, fake, kid_subsets=7, kid_subset_size=11, verbose=False, rng_seed=2020,
                                        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                        kid_kernel_poly_coef0=1)
    assert mean.item() != pytest.approx(swapped["kernel_inception_distance_mean"], rel=1e-6)
    assert KID.higher_is_better is False and KID.input_kind == "features"
