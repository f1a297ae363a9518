"""bench.metrics.memorization: authpct against dgm-eval's compute_authpct (transcribed), hand cases, the classes."""

import pytest
import torch

from bench.metrics import requests as rq
from bench.metrics.base import MetricContext
from bench.metrics.memorization import AuthPct, Memorization, authenticity, authpct, memorization
from bench.metrics.registry import METRICS


def dgm_eval_authpct(train_feat: torch.Tensor, gen_feat: torch.Tensor) -> float:
    """dgm-eval's ``compute_authpct`` (from marcojira/fls ``AuthPct``), transcribed; float64 instead of its
    float32 so that round-off cannot flip a near-tie between the two implementations."""
    train_feat, gen_feat = train_feat.double(), gen_feat.double()
    real_dists = torch.cdist(train_feat, train_feat)
    real_dists.fill_diagonal_(float("inf"))  # ignore the distance to self
    gen_dists = torch.cdist(train_feat, gen_feat)
    real_min_dists = real_dists.min(axis=0)
    gen_min_dists = gen_dists.min(dim=0)
    authen = real_min_dists.values[gen_min_dists.indices] < gen_min_dists.values
    return (100 * torch.sum(authen) / len(authen)).item()


def features(seed, n, d, shift=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


@pytest.mark.parametrize("chunk_size", [7, 1024])
def test_matches_dgm_eval(chunk_size):
    """authpct equals the transcription on a mix of near-copies and fresh samples (strictly between 0 and 100)."""
    train = features(0, 120, 10)
    near_copies = train[:40] + 0.05 * features(1, 40, 10)  # closer to their source than its neighbour: memorized
    fresh = features(2, 60, 10, scale=1.3)
    fake = torch.cat([near_copies, fresh])
    expected = dgm_eval_authpct(train, fake)
    got = authpct(train, fake, chunk_size=chunk_size)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, abs=1e-12)
    assert 0 < got.item() < 100
    assert not authenticity(train, fake)[:40].any()  # every near-copy memorized
    assert memorization(train, fake, chunk_size).item() == pytest.approx(1 - expected / 100, abs=1e-12)


def test_hand_case_on_a_line():
    """Training points 0, 1, 11 on a line (nearest-other distances 1, 1, 10; their mean 4 keeps every centred
    coordinate exact, so the tie below is exact).

    fake 11 (a copy): d1 = 0 < 10, memorized. fake 3: nearest train 1 at d1 = 2 > 1, authentic.
    fake 7: nearest train 11 at d1 = 4 < 10, memorized. fake 0.5: nearest 0 (first on the tie with 1) at
    d1 = 0.5 < 1, memorized. fake -1: nearest 0 at d1 = 1 = d2, a tie: not authentic (strict d2 < d1).
    → authpct = 20, memorization = 0.8.
    """
    train = torch.tensor([[0.0], [1.0], [11.0]])
    fake = torch.tensor([[11.0], [3.0], [7.0], [0.5], [-1.0]])
    assert authenticity(train, fake).tolist() == [False, True, False, False, False]
    assert authpct(train, fake).item() == pytest.approx(20.0)
    assert memorization(train, fake).item() == pytest.approx(0.8)
    assert dgm_eval_authpct(train, fake) == pytest.approx(20.0)


def test_exact_copies_of_training_points_are_memorized():
    """A generated set that copies training points scores authpct 0 (d1 = 0 is never > d2), even after cdist's
    matmul path (large sets) and far from the origin."""
    train = features(3, 200, 32, shift=50.0)
    fake = train[torch.arange(0, 200, 3)].clone()
    assert authpct(train, fake).item() == 0.0
    assert memorization(train, fake).item() == 1.0


def test_too_few_training_samples_raise():
    with pytest.raises(ValueError, match="at least 2 training"):
        authpct(features(0, 1, 3), features(1, 4, 3))


def test_classes_through_requests_feed_values():
    """Both registered classes ask for train and fake features and give the functional values; directions differ."""
    train, fake = features(4, 80, 8), torch.cat([features(4, 80, 8)[:20] + 1e-3, features(5, 30, 8)])
    inputs = {rq.Features("train"): train.float(), rq.Features("fake"): fake.float()}
    expected = dgm_eval_authpct(train.float(), fake.float())
    results = {}
    for name, cls in (("authpct", AuthPct), ("memorization", Memorization)):
        assert METRICS.get(name) is cls
        metric = cls.build(MetricContext())
        assert metric.requests() == (rq.Features("train"), rq.Features("fake"))
        metric.feed(inputs)
        values = metric.values(name)
        assert list(values) == [name]
        results[name] = values[name].value
        assert "comparison=strict" in metric.protocol()
        assert all("=" in part for part in metric.protocol().split(","))
    assert results["authpct"] == pytest.approx(expected, abs=1e-12)
    assert results["memorization"] == pytest.approx(1 - expected / 100, abs=1e-12)
    assert 0 < results["memorization"] < 1
    assert AuthPct.higher_is_better is True and Memorization.higher_is_better is False
