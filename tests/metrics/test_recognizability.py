"""bench.metrics.recognizability: recognizable and class-coverage against hand computations and invariants."""

import math

import pytest
import torch

from bench.metrics import requests as rq
from bench.metrics.base import MetricContext
from bench.metrics.recognizability import (
    ClassCoverage,
    Recognizable,
    class_coverage,
    recognizability,
)
from bench.metrics.registry import METRICS


def one_hot_logits(classes: torch.Tensor, k: int, scale: float = 30.0) -> torch.Tensor:
    """(M, k) logits whose argmax is ``classes`` (the winner ``scale`` above the rest)."""
    logits = torch.zeros(len(classes), k)
    logits[torch.arange(len(classes)), classes] = scale
    return logits


# ----------------------------------------------------------------------------------------------- recognizable
def test_recognizability_by_hand():
    """Two samples over 3 classes: max-softmax by the exp formula, mean and population std."""
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, math.log(3.0)]], dtype=torch.float64)
    p0 = math.exp(2) / (math.exp(2) + 2)  # 0.7869
    p1 = 3 / (1 + math.e + 3)  # class 2: exp(log 3) = 3
    mean, std = recognizability(logits)
    assert mean.item() == pytest.approx((p0 + p1) / 2, rel=1e-12)
    assert std.item() == pytest.approx(abs(p0 - p1) / 2, rel=1e-12)


@pytest.mark.parametrize("k", [2, 10])
def test_uniform_logits_give_one_over_k(k):
    mean, std = recognizability(torch.full((7, k), 3.5))
    assert mean.item() == pytest.approx(1 / k, rel=1e-12)
    assert std.item() == pytest.approx(0.0, abs=1e-15)


def test_confident_logits_approach_one_and_shift_invariance():
    """Near one-hot logits score ~1; adding a constant per row changes nothing (softmax invariance)."""
    logits = one_hot_logits(torch.tensor([0, 3, 1]), 4)
    assert recognizability(logits)[0].item() == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    random = torch.randn(20, 5, generator=g)
    shifted = random + torch.randn(20, 1, generator=g) * 100
    assert recognizability(shifted)[0].item() == pytest.approx(recognizability(random)[0].item(), rel=1e-5)
    assert 1 / 5 < recognizability(random)[0].item() < 1


def test_recognizable_class_path():
    """requests/feed/values in two batches equal the functional on the concatenation; registered, higher better."""
    assert METRICS.get("recognizable") is Recognizable
    assert Recognizable.higher_is_better is True
    metric = Recognizable.build(MetricContext(num_classes=3))
    assert metric.requests() == (rq.ClassifierLogits("fake"),)
    assert rq.backbone_fields(metric.requests()) == {"classifier_backbone"}
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 3, generator=g) * 3, torch.randn(4, 3, generator=g) * 3
    metric.feed({rq.ClassifierLogits("fake"): a})
    metric.feed({rq.ClassifierLogits("fake"): b})
    mean, std = recognizability(torch.cat([a, b]))
    values = metric.values("recognizable")
    assert list(values) == ["recognizable"]
    assert values["recognizable"].value == pytest.approx(mean.item(), rel=1e-12)
    assert values["recognizable"].std == pytest.approx(std.item(), rel=1e-12)
    assert values["recognizable"].std > 0.01
    assert metric.compute().item() == pytest.approx(mean.item(), rel=1e-12)
    protocol = metric.protocol()
    assert "samples=10" in protocol and "classes=3" in protocol
    assert all("=" in part for part in protocol.split(","))


def test_recognizable_empty_raises():
    with pytest.raises(ValueError, match="at least one generated sample"):
        Recognizable().values("recognizable")
    with pytest.raises(ValueError, match=r"\(M, K\)"):
        recognizability(torch.zeros(5))


# --------------------------------------------------------------------------------------------- class-coverage
def test_class_coverage_by_hand():
    """p = (3/4, 1/4, 0) from the argmax; q = (1/3, 1/3, 1/3): TV = ½(5/12 + 1/12 + 1/3) = 5/12 → 7/12."""
    logits = one_hot_logits(torch.tensor([0, 0, 1, 0]), 3) + torch.randn(4, 3, generator=torch.Generator()
                                                                            .manual_seed(2))
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    assert class_coverage(logits, labels).item() == pytest.approx(7 / 12, rel=1e-12)
    # and as Σ_k min(p_k, q_k) = 1/3 + 1/4 + 0
    assert class_coverage(logits, labels).item() == pytest.approx(1 / 3 + 1 / 4, rel=1e-12)


def test_matching_histogram_gives_one():
    """One-hot real-like logits whose argmax histogram equals the labels' (order shuffled, different N) → 1."""
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3] * 3)  # q = (1/4, 1/8, 3/8, 1/4)
    fake = torch.tensor([3, 2, 0, 2, 1, 0, 2, 3])  # same histogram, 8 samples
    assert class_coverage(one_hot_logits(fake, 4), labels).item() == pytest.approx(1.0, abs=1e-15)


def test_one_class_among_ten_balanced_gives_point_one():
    labels = torch.arange(10).repeat(5)  # balanced, q_k = 0.1
    for c in (0, 7):
        assert class_coverage(one_hot_logits(torch.full((13,), c), 10), labels).item() == pytest.approx(0.1)


def test_disjoint_gives_zero_and_unseen_classifier_class():
    """Samples only in classes the data never has → 0; K from the logits counts classes absent from both."""
    labels = torch.tensor([0, 1, 0, 1])
    assert class_coverage(one_hot_logits(torch.tensor([2, 3, 3]), 5), labels).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="classes must lie in 0 .. 1"):
        class_coverage(one_hot_logits(torch.tensor([0, 1]), 2), torch.tensor([0, 2]))


def test_class_coverage_class_path():
    """requests/feed/values in two batches equal the functional; registered, higher is better."""
    assert METRICS.get("class-coverage") is ClassCoverage
    assert ClassCoverage.higher_is_better is True
    metric = ClassCoverage.build(MetricContext(num_classes=4))
    assert metric.requests() == (rq.ClassifierLogits("fake"), rq.Labels("real"))
    assert rq.backbone_fields(metric.requests()) == {"classifier_backbone"}
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(30, 4, generator=g), torch.randn(20, 4, generator=g) + torch.tensor([2.0, 0, 0, 0])
    la, lb = torch.randint(0, 4, (40,), generator=g), torch.randint(0, 4, (25,), generator=g)
    metric.feed({rq.ClassifierLogits("fake"): a, rq.Labels("real"): la})
    metric.feed({rq.ClassifierLogits("fake"): b, rq.Labels("real"): lb})
    expected = class_coverage(torch.cat([a, b]), torch.cat([la, lb])).item()
    values = metric.values("class-coverage")
    assert list(values) == ["class-coverage"]
    assert values["class-coverage"].value == pytest.approx(expected, rel=1e-12)
    assert 0.3 < expected < 0.99  # neither trivial end
    protocol = metric.protocol()
    assert "samples=50" in protocol and "real_labels=65" in protocol and "classes=4" in protocol
    assert all("=" in part for part in protocol.split(","))


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_class_coverage_errors():
    with pytest.raises(ValueError, match="needs generated samples"):
        ClassCoverage().compute()
    metric = ClassCoverage()
    metric.update(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="changed from 3 to 4"):
        metric.update(torch.zeros(2, 4), torch.tensor([0, 1]))
