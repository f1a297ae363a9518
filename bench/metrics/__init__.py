"""Metrics, registered in :data:`METRICS` (torchmetrics classes with the suite's protocol declared)."""

from bench.metrics import (  # noqa: F401  (registration)
    classification,
    clip_score,
    cmmd,
    cross_modal,
    fid,
    inception_score,
    joint_coherence,
    kid,
    likelihood,
    memorization,
    per_class_fid,
    prc,
    recognizability,
    reconstruction,
    robustness,
    vendi,
)
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS

__all__ = ["METRICS", "BenchMetric", "MetricContext"]
