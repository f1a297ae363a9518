"""bench.metrics.vendi: equality with the ``vendi-score`` package, hand cases, and the metric class."""

import math

import numpy as np
import pytest
import torch

from bench.metrics import requests as rq
from bench.metrics.base import MetricContext
from bench.metrics.registry import METRICS
from bench.metrics.vendi import Vendi, vendi


def features(seed, n, d, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


@pytest.mark.parametrize(("n", "d"), [(30, 50), (80, 12)])  # n x n and D x D formulations
def test_matches_vendi_score_package(n, d):
    """vendi equals vendi_score.vendi.score_X (and score_K of the cosine Gram matrix) to 1e-6 relative."""
    reference = pytest.importorskip("vendi_score.vendi")
    x = features(0, n, d, shift=0.5)
    got = vendi(x).item()
    assert got == pytest.approx(float(reference.score_X(x.numpy())), rel=1e-6)
    unit = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    assert got == pytest.approx(float(reference.score_K(unit @ unit.T)), rel=1e-6)
    assert 1 < got < min(n, d)


def test_identical_samples_score_one():
    """n copies of one vector (any positive scaling) → 1."""
    x = torch.tensor([[1.0, 2.0, -1.0]]).repeat(7, 1) * torch.arange(1, 8).unsqueeze(1)
    assert vendi(x).item() == pytest.approx(1.0, abs=1e-9)


def test_orthogonal_samples_score_n():
    """n mutually orthogonal vectors → n, for n < D and for n = D (the D x D path when n > D is the next test)."""
    assert vendi(torch.eye(10)[:6] * 3.0).item() == pytest.approx(6.0, rel=1e-12)
    q, _ = torch.linalg.qr(features(1, 8, 8))
    assert vendi(q).item() == pytest.approx(8.0, rel=1e-9)


def test_two_clusters_by_hand():
    """a copies of e1 and b copies of e2: eigenvalues a/n, b/n, so the score is exp(H(a/n, b/n))."""
    a, b = 3, 5
    x = torch.cat([torch.eye(2)[:1].repeat(a, 1), torch.eye(2)[1:].repeat(b, 1)])  # (8, 2): n > D path
    p = np.array([a, b]) / (a + b)
    assert vendi(x).item() == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)


def test_zero_row_raises():
    with pytest.raises(ValueError, match="all zeros"):
        vendi(torch.zeros(3, 4))


def test_metric_class_through_requests_feed_values():
    """The registered class asks for generated features only; feed/values give the functional value."""
    x = features(2, 40, 16)
    assert METRICS.get("vendi") is Vendi
    metric = Vendi.build(MetricContext())
    assert metric.requests() == (rq.Features("fake"),)
    metric.feed({rq.Features("fake"): x.float()})
    values = metric.values("vendi")
    assert values["vendi"].value == pytest.approx(vendi(x.float()).item(), rel=1e-12)
    assert Vendi.higher_is_better is True and "kernel=cosine" in metric.protocol()
    assert all("=" in part for part in metric.protocol().split(","))
