"""bench.metrics.inception_score: equal to torch-fidelity's Inception Score math, seeded, and fed by the evaluator."""

from __future__ import annotations

import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric

from bench.metrics import METRICS, MetricContext
from bench.metrics.inception_score import InceptionScore, inception_score


def _logits(n: int = 200, k: int = 50, seed: int = 0) -> torch.Tensor:  # (n, k)
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("splits", [1, 4, 10])
def test_equals_torch_fidelity(splits: int) -> None:
    """Same logits, same seed → torch-fidelity's mean and std to float64 round-off."""
    logits = _logits()
    mean, std = inception_score(logits, splits=splits, seed=2020)
    ref = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=2020)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-9, abs=1e-12)


def test_bounds_and_seed() -> None:
    """IS lies in [1, K]; one-hot confident, uniform over classes → close to K; the seed changes only the split."""
    k = 10
    confident = torch.eye(k).repeat(20, 1) * 50  # (200, 10): every class equally often, each sample certain
    mean, _ = inception_score(confident, splits=1)
    assert mean == pytest.approx(k, rel=1e-6)
    assert inception_score(torch.zeros(50, k), splits=5)[0] == pytest.approx(1.0)
    logits = _logits()
    assert inception_score(logits, splits=5, seed=1) == inception_score(logits, splits=5, seed=1)
    assert inception_score(logits, splits=5, seed=1) != inception_score(logits, splits=5, seed=2)
    assert inception_score(logits, splits=1, seed=1)[0] == pytest.approx(inception_score(logits, splits=1, seed=2)[0])


def test_metric_batches_and_registry() -> None:
    """Registered as `is` (logits, higher is better); batch-wise updates equal one update."""
    assert METRICS.get("is") is InceptionScore
    assert InceptionScore.input_kind == "logits" and InceptionScore.higher_is_better is True
    logits = _logits()
    one, many = InceptionScore.build(MetricContext(seed=3, is_splits=4)), InceptionScore(splits=4, seed=3)
    one.update(logits)
    for part in logits.split(7):
        many.update(part)
    assert one.compute().item() == pytest.approx(many.compute().item(), rel=1e-12)
    assert one.protocol() == "splits=4,shuffle seed=3,float64"


def test_too_few_samples() -> None:
    with pytest.raises(ValueError, match="at least 10 samples"):
        inception_score(_logits(n=5), splits=10)
