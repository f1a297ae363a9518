"""The model registry."""

from bench.registry import Registry
from models.base import BenchModule

MODELS: Registry[type[BenchModule]] = Registry("model", base=BenchModule)
