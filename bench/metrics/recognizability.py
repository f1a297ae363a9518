"""Whether generated samples are recognizable, by number: the track's in-domain classifier judges the samples.

Both metrics take the logits of the track's classifier backbone (``eval.classifier_backbone``, e.g.
``classifier-indomain-fashion``) on the model's unconditional samples (``ClassifierLogits("fake")``):

* ``recognizable`` (higher is better): the mean over samples of the classifier's max-softmax probability,
  ``(1/M) Σ_i max_k softmax(z_i)_k``, in [1/K, 1]; its spread is the (population) std over samples. A sample the
  classifier assigns confidently to one class scores near 1; one it cannot tell apart from any class (uniform
  softmax) scores 1/K. It is an Inception-Score-like *confidence* and says nothing about diversity: a model that
  draws one perfect class scores 1 (read it together with ``class-coverage``), and an over-confident classifier
  inflates it on off-manifold images too.
* ``class-coverage`` (higher is better): ``1 − TV(p, q) = Σ_k min(p_k, q_k)``, where ``p_k`` is the fraction of
  samples whose classifier argmax is class ``k`` and ``q_k`` the fraction of real reference labels equal to ``k``
  (``Labels("real")``), and ``TV(p, q) = ½ Σ_k |p_k − q_k|`` the total-variation distance. It is 1 when the
  samples' predicted classes are distributed like the data's classes, 0 when the two histograms are disjoint, and
  ``q_c`` when every sample falls in class ``c`` (0.1 for one class of 10 balanced ones). It counts classes, not
  quality: it is only as meaningful as the classifier's argmax on the samples.

The classes are ``0 .. K − 1`` of the classifier's logits (K columns); real labels outside that range mean the
classifier does not classify this dataset's classes, and raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, Estimate, MetricContext
from bench.metrics.registry import METRICS


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"expected (M, K) classifier logits with K >= 1, got {tuple(logits.shape)}")


def max_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The classifier's max-softmax probability of each sample.

    Args:
        logits: (M, K) classifier logits.

    Returns:
        (M,) float64 ``max_k softmax(logits_i)_k``.
    """
    _check_logits(logits)
    return logits.double().softmax(dim=1).amax(dim=1)  # (M,)


def recognizability(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std over samples of the max-softmax probability (``recognizable``).

    Args:
        logits: (M, K) classifier logits of M >= 1 generated samples.

    Returns:
        ``(mean, std)``, 0-dim float64 tensors; the mean lies in [1/K, 1].
    """
    probs = max_probabilities(logits)  # (M,)
    if len(probs) == 0:
        raise ValueError("recognizable needs at least one generated sample")
    return probs.mean(), probs.std(unbiased=False)


def class_histogram(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) float64 fractions of ``classes`` (N,) in each class ``0 .. num_classes − 1``."""
    classes = classes.long().cpu()
    if len(classes) == 0:
        raise ValueError("a class histogram needs at least one sample")
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"classes must lie in 0 .. {num_classes - 1}, got {int(classes.min())} .. "
                         f"{int(classes.max())}")
    return torch.bincount(classes, minlength=num_classes).double() / len(classes)  # (K,)


def class_coverage(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """``1 − TV(p, q) = Σ_k min(p_k, q_k)``: p the histogram of the samples' argmax classes, q that of the real
    labels (``class-coverage``).

    Args:
        logits: (M, K) classifier logits of the generated samples.
        labels: (N,) class labels of the real reference images.
        num_classes: Number of classes (None: the K of ``logits``); every label must be below it.

    Returns:
        0-dim float64 in [0, 1]: 1 for identical histograms, 0 for disjoint ones.
    """
    _check_logits(logits)
    num_classes = logits.shape[1] if num_classes is None else num_classes
    if num_classes < logits.shape[1]:
        raise ValueError(f"num_classes={num_classes} is fewer than the classifier's {logits.shape[1]} classes")
    p = class_histogram(logits.argmax(dim=1), num_classes)  # (K,)
    q = class_histogram(labels, num_classes)  # (K,)
    return 1.0 - 0.5 * (p - q).abs().sum()


@METRICS.register("recognizable")
class Recognizable(BenchMetric, Metric):
    """Mean max-softmax probability of the track's classifier backbone on the generated samples; higher is better.
    The spread is the population std over samples. Keeps one float per sample."""

    input_kind = "logits"
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("max_probs", [], dist_reduce_fx="cat")
        self.last_num_samples = 0
        self.last_num_classes: int | None = None

    @classmethod
    def build(cls, ctx: MetricContext) -> Recognizable:
        return cls()

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.ClassifierLogits("fake"),)

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        self.update(inputs[rq.ClassifierLogits("fake")])

    def update(self, logits: torch.Tensor) -> None:  # (M, K)
        self.max_probs.append(max_probabilities(logits.detach()))
        self.last_num_classes = logits.shape[1]

    def _probs(self) -> torch.Tensor:
        probs = dim_zero_cat(self.max_probs) if self.max_probs else torch.zeros(0, dtype=torch.float64)  # (M,)
        if len(probs) == 0:
            raise ValueError("recognizable needs at least one generated sample")
        self.last_num_samples = len(probs)
        return probs

    def compute(self) -> torch.Tensor:
        return self._probs().mean()

    def values(self, name: str) -> dict[str, Estimate]:
        probs = self._probs()  # (M,)
        return {name: Estimate(float(probs.mean()), float(probs.std(unbiased=False)))}

    def protocol(self) -> str:
        return (f"samples={self.last_num_samples},classes={self.last_num_classes},"
                "value=mean over samples of max softmax probability of the classifier backbone,"
                "std=population over samples,range=[1/classes;1],softmax=float64")


@METRICS.register("class-coverage")
class ClassCoverage(BenchMetric, Metric):
    """``1 − TV(p, q) = Σ_k min(p_k, q_k)`` between the histogram p of the classifier backbone's argmax classes on
    the generated samples and the histogram q of the real reference labels; higher is better (1: distributed like
    the data, 0: disjoint). Keeps one class index per sample and per real label."""

    input_kind = "logits"
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("fake_classes", [], dist_reduce_fx="cat")
        self.add_state("real_labels", [], dist_reduce_fx="cat")
        self.last_num_classes: int | None = None
        self.last_counts: tuple[int, int] = (0, 0)

    @classmethod
    def build(cls, ctx: MetricContext) -> ClassCoverage:
        return cls()

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.ClassifierLogits("fake"), rq.Labels("real"))

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        self.update(inputs[rq.ClassifierLogits("fake")], inputs[rq.Labels("real")])

    def update(self, fake_logits: torch.Tensor, real_labels: torch.Tensor) -> None:  # (M, K), (N,)
        _check_logits(fake_logits)
        if self.last_num_classes is not None and fake_logits.shape[1] != self.last_num_classes:
            raise ValueError(f"classifier logits changed from {self.last_num_classes} to {fake_logits.shape[1]} "
                             "classes between updates")
        self.last_num_classes = fake_logits.shape[1]
        self.fake_classes.append(fake_logits.detach().argmax(dim=1))
        self.real_labels.append(real_labels.detach().long())

    def compute(self) -> torch.Tensor:
        if self.last_num_classes is None:
            raise ValueError("class-coverage needs generated samples and real labels")
        fake, real = dim_zero_cat(self.fake_classes), dim_zero_cat(self.real_labels)  # (M,), (N,)
        self.last_counts = (len(fake), len(real))
        p = class_histogram(fake, self.last_num_classes)  # (K,)
        q = class_histogram(real, self.last_num_classes)  # (K,)
        return 1.0 - 0.5 * (p - q).abs().sum()

    def protocol(self) -> str:
        return (f"samples={self.last_counts[0]},real_labels={self.last_counts[1]},classes={self.last_num_classes},"
                "value=1-TV(p;q)=sum_k min(p_k;q_k),p=histogram of classifier argmax on samples,"
                "q=histogram of real reference labels,TV=half L1")
