"""bench.metrics.prc: precision / recall / density / coverage against the ``prdc`` package and brute force."""

import numpy as np
import pytest
import scipy.spatial.distance
import torch

from bench.evaluate import Evaluator
from bench.metrics import METRICS
from bench.metrics.base import MetricContext
from bench.metrics.prc import PRC, PRDC_KEYS, knn_radii, prdc


def features(seed, n, d, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The papers' definitions written out with explicit loops over samples (scipy distances)."""
    d_rr = scipy.spatial.distance.cdist(real, real)
    d_ff = scipy.spatial.distance.cdist(fake, fake)
    d_rf = scipy.spatial.distance.cdist(real, fake)  # (N, M)
    n, m = len(real), len(fake)
    rho = [sorted(d_rr[i, j] for j in range(n) if j != i)[k - 1] for i in range(n)]
    sigma = [sorted(d_ff[i, j] for j in range(m) if j != i)[k - 1] for i in range(m)]
    precision = np.mean([any(d_rf[i, j] < rho[i] for i in range(n)) for j in range(m)])
    recall = np.mean([any(d_rf[i, j] < sigma[j] for j in range(m)) for i in range(n)])
    density = sum(d_rf[i, j] < rho[i] for i in range(n) for j in range(m)) / (k * m)
    coverage = np.mean([min(d_rf[i, j] for j in range(m)) < rho[i] for i in range(n)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_prdc_package(k, capsys):
    """prdc equals prdc.compute_prdc (NAVER's reference) on overlapping, unequal-size Gaussian sets."""
    compute_prdc = pytest.importorskip("prdc").compute_prdc
    real, fake = features(0, 300, 16), features(1, 250, 16, shift=0.3, scale=1.2)
    expected = compute_prdc(real.numpy(), fake.numpy(), nearest_k=k)
    got = prdc(real, fake, k=k)
    assert set(got) == set(PRDC_KEYS)
    for key in PRDC_KEYS:
        assert got[key].dtype == torch.float64 and got[key].ndim == 0
        assert got[key].item() == pytest.approx(float(expected[key]), abs=1e-12), key
    assert 0 < got["precision"].item() < 1 and 0 < got["recall"].item() < 1


def test_matches_brute_force_definitions():
    """prdc equals the loop-over-samples definitions (small sets, k=3, different N and M)."""
    real, fake = features(2, 40, 5), features(3, 31, 5, shift=0.5)
    expected = brute_force(real.numpy(), fake.numpy(), k=3)
    got = prdc(real, fake, k=3)
    for key in PRDC_KEYS:
        assert got[key].item() == pytest.approx(expected[key], abs=1e-12), key


def test_knn_radii_exclude_self():
    """On the line 0, 1, 3, 7 the 1st / 2nd neighbour distances exclude the point itself."""
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="nearest_k"):
        knn_radii(x, 4)


def test_identical_sets_score_one():
    """fake = real: precision = recall = coverage = 1 (each point lies in its own ball); density = 1 too."""
    x = features(4, 120, 8)
    got = prdc(x, x.clone(), k=3)
    for key in ("precision", "recall", "coverage"):
        assert got[key].item() == 1.0, key
    # Σ_j #{i : d(r_i, f_j) < ρ_i} = Σ_i #{j : d(r_i, r_j) < ρ_i} = Σ_i (1 + (k - 1)) = k N: the twin plus the
    # k - 1 nearer neighbours; the k-th neighbour sits exactly on the (open) ball's boundary. That tie is decided
    # by round-off unless the cross distances are computed like the radii (see prdc's comment).
    assert got["density"].item() == pytest.approx(1.0, abs=1e-12)


def test_disjoint_sets_score_zero():
    """Far-apart sets: every value is 0."""
    real, fake = features(5, 80, 6), features(6, 70, 6, shift=100.0)
    got = prdc(real, fake, k=3)
    for key in PRDC_KEYS:
        assert got[key].item() == 0.0, key


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_chunked_equals_unchunked(chunk_size):
    """Every chunk size (one row, ragged, one block) gives the identical values."""
    real, fake = features(7, 150, 12), features(8, 110, 12, shift=0.2)
    reference = prdc(real, fake, k=3, chunk_size=10_000)
    got = prdc(real, fake, k=3, chunk_size=chunk_size)
    for key in PRDC_KEYS:
        assert got[key].item() == reference[key].item(), key


def test_metric_batch_size_independent():
    """PRC.update in batches of any size (float32 or float64) then compute equals prdc on the whole sets."""
    real, fake = features(9, 130, 10), features(10, 90, 10, shift=0.4)
    expected = prdc(real, fake.float().double(), k=3)
    for real_bs, fake_bs in [(130, 90), (13, 7), (1, 50)]:
        metric = PRC.build(MetricContext(num_features=10))
        for chunk in real.split(real_bs):
            metric.update(chunk, real=True)
        for chunk in fake.float().split(fake_bs):
            metric.update(chunk, real=False)
        got = metric.compute()
        for key in PRDC_KEYS:
            assert got[key].item() == expected[key].item(), (real_bs, fake_bs, key)


def test_registration_and_protocol():
    assert METRICS.get("prc") is PRC
    assert PRC.input_kind == "features" and PRC.higher_is_better is True
    assert PRC().protocol().startswith("k=3,euclidean")
    assert PRC(nearest_k=5).protocol().startswith("k=5,")


def test_evaluator_turns_dict_into_four_rows():
    """The evaluator makes one Score per value of a dict metric, each with the metric's direction, protocol and
    the counts of the features it was fed."""
    from types import SimpleNamespace

    import torch

    from bench.evaluate import ImageSetSubject
    from bench.spec import EvalSpec

    class Identity(torch.nn.Module):  # (B, 1, 2, 2) uint8 images -> (B, 4) features
        registry_name, weights_sha256, resize, forward_version, num_features = "bb", "0" * 64, "none", "1", 4

        def forward(self, x):
            return x.flatten(1).float()

    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (60, 1, 2, 2), generator=gen, dtype=torch.uint8)
    fake = torch.randint(0, 200, (50, 1, 2, 2), generator=gen, dtype=torch.uint8)
    evaluator = Evaluator(EvalSpec(batch_size=16), ("prc",), Identity())
    data = SimpleNamespace(image_shape=(1, 2, 2), num_classes=0, modalities=("image",))
    scores = evaluator.score(ImageSetSubject({"real": real, "fake": fake}), data, seed=0)
    expected = prdc(real.flatten(1).float(), fake.flatten(1).float(), k=3)
    assert [s.metric for s in scores] == list(PRDC_KEYS)
    for s in scores:
        assert s.value == pytest.approx(expected[s.metric].item(), abs=0)
        assert s.higher_is_better is True and s.protocol.startswith(PRC().protocol())
        assert (s.split, s.n_real, s.n_fake, s.backbone) == ("test", 60, 50, "bb")


def test_shape_checks():
    with pytest.raises(ValueError, match="expected"):
        prdc(features(0, 10, 3), features(1, 10, 4))
    with pytest.raises(ValueError, match="nearest_k"):
        prdc(features(0, 3, 3), features(1, 10, 3), k=3)
