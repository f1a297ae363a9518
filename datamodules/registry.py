"""The datamodule registry (kept apart from ``__init__`` so datamodule files can import it without cycles)."""

from bench.registry import Registry
from datamodules.base import BenchDataModule

DATAMODULES: Registry[type[BenchDataModule]] = Registry("datamodule", base=BenchDataModule)
