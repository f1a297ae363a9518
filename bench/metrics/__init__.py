"""Metrics, registered in :data:`METRICS` (torchmetrics classes with the suite's protocol declared)."""

from bench.metrics import classification, fid, inception_score, kid, prc, reconstruction  # noqa: F401
from bench.metrics import clip_score  # noqa: F401  (registration: clip-score)
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS

__all__ = ["METRICS", "BenchMetric", "MetricContext"]
