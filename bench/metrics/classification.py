"""Task metrics of classifiers (fusion models), from torchmetrics."""

from __future__ import annotations

from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS


@METRICS.register("accuracy")
class Accuracy(BenchMetric, MulticlassAccuracy):
    """Top-1 accuracy over all test samples (micro average); higher is better."""

    input_kind = "classification"
    higher_is_better = True

    @classmethod
    def build(cls, ctx: MetricContext) -> Accuracy:
        return cls(num_classes=ctx.num_classes, average="micro")

    def protocol(self) -> str:
        return "top1,micro"


@METRICS.register("f1-macro")
class F1Macro(BenchMetric, MulticlassF1Score):
    """F1 averaged over classes with equal weight (macro); higher is better."""

    input_kind = "classification"
    higher_is_better = True

    @classmethod
    def build(cls, ctx: MetricContext) -> F1Macro:
        return cls(num_classes=ctx.num_classes, average="macro")

    def protocol(self) -> str:
        return "macro over classes"
