"""The ``real-data`` reference row of generative tracks: real images scored as if a model had generated them.

FID and KID on a feature backbone have no absolute scale (EfficientNet-Lite0 FDs are in the hundreds, see
docs/metrics.md), so every track scored by feature metrics gets one more unit per datamodule and seed: ``n_fake``
images drawn (seeded) from a real split disjoint from the reference split — ``train`` when the reference is
``test`` or ``val``, else ``test`` — go through exactly the evaluation a model's samples go through (same
backbone, resize, sample sizes, KID subsets, IS splits). Its scores are the floor a perfect generator would
reach under this protocol at this sample size; the leaderboard shows it as model ``real-data`` of family
``reference``. Nothing trains.
"""

from __future__ import annotations

import torch

from bench.catalog import REFERENCE_LABEL, reference_split
from datamodules import BenchDataModule
from models import ImageGenerator

REFERENCE_FAMILY = "reference"
__all__ = ["REFERENCE_FAMILY", "REFERENCE_LABEL", "RealDataReference", "reference_model", "reference_split"]


class RealDataReference(ImageGenerator):
    """An :class:`~models.base.ImageGenerator` whose samples are real images, drawn without replacement.

    Args:
        images: (N, C, H, W) float images in [0, 1] of the disjoint split.
        split: Its name (for messages and the protocol).
    """

    registry_name = REFERENCE_LABEL
    family = REFERENCE_FAMILY

    def __init__(self, images: torch.Tensor, split: str) -> None:
        super().__init__()
        self.images, self.split = images, split
        self.image_shape = tuple(images.shape[1:])
        self._order: torch.Tensor | None = None
        self._next = 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # -> (n, C, H, W)
        """The next ``n`` images of one permutation drawn with ``generator`` at the first call."""
        if self._order is None:
            self._order = torch.randperm(len(self.images), generator=generator)
        idx = self._order[self._next: self._next + n]
        if len(idx) < n:
            raise ValueError(f"split {self.split!r} holds {len(self.images)} images, fewer than the reference asks")
        self._next += n
        return self.images[idx]


def reference_model(dm: BenchDataModule, real_split: str, n_fake: int) -> RealDataReference | None:
    """The reference generator for ``dm``, or None when its disjoint split has fewer than ``n_fake`` images (or
    no images)."""
    split = reference_split(real_split)
    try:
        images = dm.split_tensors(split).get("image")
    except (ValueError, KeyError):
        return None
    if images is None or len(images) < n_fake:
        return None
    return RealDataReference(images, split)
