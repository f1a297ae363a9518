"""bench.metrics.cmmd: the official CMMD estimator (numpy transcription), invariants, and the metric class."""

import numpy as np
import pytest
import torch

from bench.metrics import requests as rq
from bench.metrics.base import MetricContext
from bench.metrics.cmmd import CMMD, cmmd, rbf_kernel_mean
from bench.metrics.registry import METRICS


def official_mmd(x: np.ndarray, y: np.ndarray, sigma: float = 10, scale: float = 1000) -> float:
    """google-research cmmd/distance.py ``mmd`` transcribed from jax.numpy to numpy (float64)."""
    x_sqnorms = np.diag(np.matmul(x, x.T))
    y_sqnorms = np.diag(np.matmul(y, y.T))
    gamma = 1 / (2 * sigma**2)
    k_xx = np.mean(np.exp(-gamma * (-2 * np.matmul(x, x.T) + x_sqnorms[:, None] + x_sqnorms[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * np.matmul(x, y.T) + x_sqnorms[:, None] + y_sqnorms[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * np.matmul(y, y.T) + y_sqnorms[:, None] + y_sqnorms[None, :])))
    return scale * (k_xx + k_yy - 2 * k_xy)


def unit_rows(a: np.ndarray) -> np.ndarray:
    """The official pipeline's embedding normalisation (``embs / norm(embs, axis=-1, keepdims=True)``)."""
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def features(seed, n, d, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def test_matches_official_on_normalised_embeddings():
    """cmmd (normalize=True) equals the official mmd on unit-norm embeddings, unequal set sizes, several chunks."""
    x, y = features(0, 70, 16), features(1, 45, 16, shift=0.4)
    expected = official_mmd(unit_rows(x.numpy()), unit_rows(y.numpy()))
    got = cmmd(x, y, chunk_size=16)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert got.item() > 0.5  # a real difference, far from round-off


def test_matches_official_on_raw_features():
    """normalize=False keeps the features as given: the official mmd of the raw arrays (norms ~ sigma here)."""
    x, y = features(2, 50, 8, scale=4.0), features(3, 60, 8, shift=1.0, scale=4.0)
    expected = official_mmd(x.numpy(), y.numpy())
    assert cmmd(x, y, normalize=False, chunk_size=7).item() == pytest.approx(expected, rel=1e-9)
    assert cmmd(x, y, normalize=True).item() != pytest.approx(expected, rel=1e-3)  # normalisation matters


def test_kernel_mean_includes_diagonal():
    """The biased estimator: mean over all pairs of a 2-point set, the two diagonal terms (1 each) included."""
    a = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)  # squared distance 25
    gamma = 1 / 200
    expected = (2 * 1.0 + 2 * np.exp(-25 * gamma)) / 4
    assert rbf_kernel_mean(a, a, gamma).item() == pytest.approx(expected, rel=1e-12)


def test_invariants():
    """0 for identical sets, symmetric, and growing with a shift of the generated set."""
    x = features(4, 40, 6)
    assert cmmd(x, x).item() == pytest.approx(0.0, abs=1e-10)
    y = features(5, 30, 6, shift=0.3)
    assert cmmd(x, y).item() == pytest.approx(cmmd(y, x).item(), rel=1e-12)
    shifts = [cmmd(x, features(5, 30, 6) + torch.linspace(0, 1, 6) * s).item() for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(shifts, shifts[1:])), shifts


def test_chunk_size_does_not_change_value():
    x, y = features(6, 33, 5), features(7, 21, 5, shift=0.2)
    assert cmmd(x, y, chunk_size=4).item() == pytest.approx(cmmd(x, y, chunk_size=1000).item(), rel=1e-12)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cmmd(features(0, 5, 3), features(1, 5, 4))


def test_metric_class_through_requests_feed_values():
    """The registered class: requests, feed with a dict of answers, values → the functional value; protocol."""
    x, y = features(8, 40, 12), features(9, 35, 12, shift=0.3)
    assert METRICS.get("cmmd") is CMMD
    metric = CMMD.build(MetricContext())
    assert metric.requests() == (rq.Features("real"), rq.Features("fake"))
    metric.feed({rq.Features("real"): x.float(), rq.Features("fake"): y.float()})
    values = metric.values("cmmd")
    assert list(values) == ["cmmd"] and values["cmmd"].std is None
    assert values["cmmd"].value == pytest.approx(cmmd(x.float(), y.float()).item(), rel=1e-12)
    assert CMMD.higher_is_better is False and CMMD.input_kind == "features"
    protocol = metric.protocol()
    assert "sigma=10" in protocol and "scale=1000" in protocol and "features=l2-normalised" in protocol
    assert all("=" in part for part in protocol.split(","))
