"""The backbone registry."""

from bench.backbones.base import FeatureBackbone
from bench.registry import Registry

BACKBONES: Registry[type[FeatureBackbone]] = Registry("backbone", base=FeatureBackbone)
