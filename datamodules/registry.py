"""The datamodule registry, with the plugins of its entry-point group (:mod:`bench.plugins`); kept apart from
``__init__`` so datamodule files can import it without cycles."""

from bench.plugins import GROUPS
from bench.registry import Registry
from datamodules.base import BenchDataModule

DATAMODULES: Registry[type[BenchDataModule]] = Registry(
    "datamodule", base=BenchDataModule, plugin_group=GROUPS["datamodule"]
)
