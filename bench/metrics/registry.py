"""The metric registry (and the plugins of its entry-point group, :mod:`bench.plugins`)."""

from bench.metrics.base import BenchMetric
from bench.plugins import GROUPS
from bench.registry import Registry

METRICS: Registry[type[BenchMetric]] = Registry("metric", base=BenchMetric, plugin_group=GROUPS["metric"])
