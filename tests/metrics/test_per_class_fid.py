"""bench.metrics.per_class_fid: equal to FID computed class by class with bench.metrics.fid.FID; skipped classes."""

import warnings

import pytest
import torch

from bench.metrics import requests as rq
from bench.metrics.base import MetricContext
from bench.metrics.fid import FID
from bench.metrics.per_class_fid import PerClassFID, per_class_fid
from bench.metrics.registry import METRICS

D = 4


def features(seed, n, d=D, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def fid_by_hand(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FID(num_features=real.shape[1])
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return metric.compute().item()


def logits_for(classes: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """(M, k) random logits whose argmax is ``classes``."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(classes), k, generator=g)
    logits[torch.arange(len(classes)), classes] = 10.0
    return logits


def make_inputs():
    """3 classes of real data (20 each); generated: 15 of class 0, 12 of class 1, 1 of class 2 (skipped)."""
    real = torch.cat([features(c, 20, shift=float(c)) for c in range(3)])
    real_labels = torch.arange(3).repeat_interleave(20)
    fake_classes = torch.cat([torch.zeros(15), torch.ones(12), torch.full((1,), 2)]).long()
    fake = torch.cat([features(10, 15, shift=0.3), features(11, 12, shift=1.5), features(12, 1, shift=2.0)])
    return real, real_labels, fake, logits_for(fake_classes, 3, seed=0), fake_classes


def test_functional_equals_fid_class_by_class():
    real, real_labels, fake, _, fake_classes = make_inputs()
    values, skipped = per_class_fid(real, real_labels, fake, fake_classes, num_classes=3)
    assert skipped == [2] and list(values) == [0, 1]
    for c in (0, 1):
        expected = fid_by_hand(real[real_labels == c], fake[fake_classes == c])
        assert values[c].item() == pytest.approx(expected, rel=1e-10)
        assert expected > 0.05


def test_class_through_requests_feed_values():
    """requests/feed/values: mean and population std of the per-class FIDs; class 2 named as skipped."""
    real, real_labels, fake, logits, fake_classes = make_inputs()
    assert METRICS.get("per-class-fid") is PerClassFID
    metric = PerClassFID.build(MetricContext(num_classes=3, num_features=D))
    assert metric.requests() == (rq.Features("real"), rq.Labels("real"), rq.Features("fake"),
                                 rq.ClassifierLogits("fake"))
    metric.feed({rq.Features("real"): real.float(), rq.Labels("real"): real_labels,
                 rq.Features("fake"): fake.float(), rq.ClassifierLogits("fake"): logits})
    by_hand = torch.tensor([fid_by_hand(real[real_labels == c].float(), fake[fake_classes == c].float())
                            for c in (0, 1)], dtype=torch.float64)
    values = metric.values("per-class-fid")
    assert list(values) == ["per-class-fid"]
    assert values["per-class-fid"].value == pytest.approx(by_hand.mean().item(), rel=1e-10)
    assert values["per-class-fid"].std == pytest.approx(abs(by_hand[0] - by_hand[1]).item() / 2, rel=1e-10)
    protocol = metric.protocol()
    assert "skipped=2" in protocol and "classes=3" in protocol and "used=2" in protocol
    assert all("=" in part for part in protocol.split(","))
    assert PerClassFID.higher_is_better is False


def test_class_missing_from_generations_is_skipped():
    """A class the classifier never predicts (K = 4 logits, no sample of class 3 anywhere) is skipped too."""
    real, real_labels, fake, _, fake_classes = make_inputs()
    metric = PerClassFID()
    metric.update(real, real_labels, fake, logits_for(fake_classes, 4, seed=1))
    metric.values("per-class-fid")
    assert "skipped=2;3" in metric.protocol() and "classes=4" in metric.protocol()


def test_no_usable_class_raises():
    metric = PerClassFID()
    metric.update(features(0, 6), torch.tensor([0, 0, 0, 1, 1, 1]), features(1, 3), logits_for(torch.tensor(
        [0, 1, 2]), 3, seed=2))
    with pytest.raises(ValueError, match="no class has at least 2 real and 2 generated"):
        metric.values("per-class-fid")


def test_rank_deficient_classes_warn():
    """Fewer samples in a class than feature dimensions warns (like FID); enough samples does not."""
    real, real_labels = features(0, 10, d=8), torch.tensor([0] * 5 + [1] * 5)
    fake, fake_labels = features(1, 10, d=8), torch.tensor([0] * 5 + [1] * 5)
    with pytest.warns(UserWarning, match="rank-deficient"):
        per_class_fid(real, real_labels, fake, fake_labels)
    real, fake = features(2, 40, d=3), features(3, 40, d=3)
    labels = torch.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        per_class_fid(real, labels, fake, labels)
