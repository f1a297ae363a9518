"""The model registry (and the plugins of its entry-point group, :mod:`bench.plugins`)."""

from bench.plugins import GROUPS
from bench.registry import Registry
from models.base import BenchModule

MODELS: Registry[type[BenchModule]] = Registry("model", base=BenchModule, plugin_group=GROUPS["model"])
