"""Frozen feature networks for distribution metrics, registered in :data:`BACKBONES`."""

from bench.backbones import efficientnet_lite0, inception_v3_compat  # noqa: F401  (registration)
from bench.backbones import open_clip_backbone  # noqa: F401  (registration: clip-vit-b-32)
from bench.backbones import indomain  # noqa: F401  (registration: clip-indomain-fashion, classifier-indomain-*)
from bench.backbones import dinov2  # noqa: F401  (registration: dinov2-vits14)
from bench.backbones.base import BackboneWeightsError, FeatureBackbone
from bench.backbones.registry import BACKBONES

__all__ = ["BACKBONES", "BackboneWeightsError", "FeatureBackbone"]
