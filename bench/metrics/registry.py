"""The metric registry."""

from bench.metrics.base import BenchMetric
from bench.registry import Registry

METRICS: Registry[type[BenchMetric]] = Registry("metric", base=BenchMetric)
