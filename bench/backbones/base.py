"""Feature backbones: frozen networks that turn uint8 images into feature vectors for FID/KID-style metrics."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from bench.errors import InputError


class BackboneWeightsError(InputError, RuntimeError):
    """The backbone's weights could not be found; the message says what to fetch and where to put it."""


class FeatureBackbone(nn.Module):
    """Base of every registered backbone.

    A backbone takes uint8 images (B, C, H, W) with C in {1, 3}, applies its own fixed preprocessing (recorded as
    :attr:`resize`), and returns (B, :attr:`num_features`) float32 features. It is always in eval mode and never
    trains.

    Attributes:
        num_features: Dimension D of the features.
        resize: The exact resize it applies, e.g. ``"bilinear-224"``; goes into every result row.
        weights_sha256: sha256 of the weights file it loaded; goes into every result row.
        forward_version: Version of the forward computation (preprocessing and network code, not the weights):
            raised whenever a change alters the features, so no cached real statistic of an older forward is
            reused; recorded in the real-feature cache key and in the protocol of every score.
    """

    registry_name: ClassVar[str]
    forward_version: ClassVar[str] = "1"
    num_features: int
    resize: str
    weights_sha256: str

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, D)
        raise NotImplementedError

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, D) and class logits (B, K) of one pass, for Inception-Score-style metrics.

        Raises:
            NotImplementedError: If the backbone has no classification head.
        """
        raise NotImplementedError(f"backbone {type(self).__name__} has no class logits (needed by the `is` metric)")

    def train(self, mode: bool = True) -> FeatureBackbone:
        """Backbones stay in eval mode (BatchNorm statistics frozen) whatever the caller asks."""
        return super().train(False)


def check_uint8_images(images: torch.Tensor) -> None:
    """Raises ValueError unless ``images`` is a (B, 1|3, H, W) uint8 tensor."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"backbones take uint8 images of shape (B, 1 or 3, H, W); got dtype {images.dtype}, shape {tuple(images.shape)}"
        )
