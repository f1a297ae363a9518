"""The backbone registry (and the plugins of its entry-point group, :mod:`bench.plugins`)."""

from bench.backbones.base import FeatureBackbone
from bench.plugins import GROUPS
from bench.registry import Registry

BACKBONES: Registry[type[FeatureBackbone]] = Registry(
    "backbone", base=FeatureBackbone, plugin_group=GROUPS["backbone"]
)
