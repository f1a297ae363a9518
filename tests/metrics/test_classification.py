"""bench.metrics.classification: accuracy and macro-F1 against scikit-learn."""

import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from bench.metrics.base import MetricContext
from bench.metrics.classification import Accuracy, F1Macro


def predictions(seed, n=200, k=10, skill=1.5, absent=()):
    """Logits (n, k) correlated with random labels (n,), classes in ``absent`` never true nor predicted."""
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor([c for c in range(k) if c not in absent])
    target = present[torch.randint(len(present), (n,), generator=g)]
    logits = torch.randn(n, k, generator=g) + skill * torch.nn.functional.one_hot(target, k)
    logits[:, list(absent)] = -1e4
    return logits, target


def compute(cls, logits, target, k=10, batch_size=None):
    metric = cls.build(MetricContext(num_classes=k))
    for lg, t in zip(logits.split(batch_size or len(logits)), target.split(batch_size or len(target))):
        metric.update(lg, t)
    return metric.compute().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_accuracy_matches_sklearn(seed):
    """Top-1 accuracy from logits equals accuracy_score, in one batch or many."""
    logits, target = predictions(seed)
    expected = accuracy_score(target.numpy(), logits.argmax(1).numpy())
    assert 0.2 < expected < 0.9
    assert compute(Accuracy, logits, target) == pytest.approx(expected, abs=1e-6)
    assert compute(Accuracy, logits, target, batch_size=7) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_f1_macro_matches_sklearn(seed):
    """Macro F1 equals f1_score(average="macro"), which differs from accuracy here (imbalanced errors)."""
    logits, target = predictions(seed, skill=torch.linspace(0.2, 3, 10))
    expected = f1_score(target.numpy(), logits.argmax(1).numpy(), average="macro")
    assert abs(expected - accuracy_score(target.numpy(), logits.argmax(1).numpy())) > 1e-3
    assert compute(F1Macro, logits, target) == pytest.approx(expected, abs=1e-6)
    assert compute(F1Macro, logits, target, batch_size=13) == pytest.approx(expected, abs=1e-6)


def test_f1_macro_ignores_classes_never_seen():
    """A class neither true nor predicted does not count as F1 = 0 (sklearn averages over seen labels)."""
    logits, target = predictions(2, absent=(3, 7))
    expected = f1_score(target.numpy(), logits.argmax(1).numpy(), average="macro")
    assert compute(F1Macro, logits, target) == pytest.approx(expected, abs=1e-6)


def test_declarations_and_protocol():
    """Both are higher-is-better classification metrics with their averaging in the protocol."""
    assert Accuracy.higher_is_better and F1Macro.higher_is_better
    assert Accuracy.input_kind == F1Macro.input_kind == "classification"
    assert "micro" in Accuracy.build(MetricContext(num_classes=3)).protocol()
    assert "macro" in F1Macro.build(MetricContext(num_classes=3)).protocol()
