"""Real Fashion-MNIST images with captions built from the label and two measured attributes (works offline).

How each caption is built (deterministic; nothing depends on the run's seed):

* **class name**: the label's Fashion-MNIST name ("t-shirt", "trouser", ..., "ankle boot");
* **size**: the fraction of the 28×28 pixels whose intensity exceeds 0.1 (how much of the frame the garment
  covers), cut at the 1/3 and 2/3 quantiles of the *training* images into "small", "medium" and "large";
* **tone**: the mean intensity of those same pixels (how light the garment is, independent of its size), cut at the
  training terciles into "dark", "grey" and "light";
* **phrasing**: one of four templates, drawn per image with a fixed seed, e.g. "a large dark ankle boot",
  "a photo of a small , light sandal".

The attributes are measured on the native 28×28 images before any resize; the thresholds are stored on the
datamodule (:attr:`size_cuts`, :attr:`tone_cuts`). Batches are ``{"image", "text", "label"}`` as in
``captioned-digits``; the raw strings are in :attr:`captions` (per split) and :meth:`caption_strings`.
"""

from __future__ import annotations

import torch

from datamodules.base import DataSpec, SplitCaptionsMixin, resize_images
from datamodules.captioned_digits import PAD, UNK, tokenize
from datamodules.fashion_mnist import FashionMNISTDataModule
from datamodules.registry import DATAMODULES

CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
SIZES = ("small", "medium", "large")
TONES = ("dark", "grey", "light")
TEMPLATES = (
    "a {size} {tone} {name}",
    "a photo of a {size} , {tone} {name}",
    "{tone} {name} , {size}",
    "the {name} is {size} and {tone}",
)
INK_THRESHOLD = 0.1


def measure(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(size, tone) per image: fraction of pixels above :data:`INK_THRESHOLD` and their mean intensity.

    Args:
        images: (N, 1, H, W) in [0, 1].

    Returns:
        Two (N,) float tensors.
    """
    ink = images > INK_THRESHOLD  # (N, 1, H, W)
    count = ink.flatten(1).sum(1).float()  # (N,)
    size = count / (images.shape[1] * images.shape[2] * images.shape[3])
    tone = (images * ink).flatten(1).sum(1) / count.clamp(min=1)
    return size, tone


def bucket(values: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
    """Index 0, 1 or 2 of each value relative to the two cut points (values equal to a cut go up)."""
    return torch.bucketize(values, cuts, right=True)


def build_vocab() -> dict[str, int]:
    """Word → id over every word a caption can contain; ids 0 and 1 are padding and unknown."""
    words = set(SIZES) | set(TONES) | {w for name in CLASS_NAMES for w in name.split()}
    for template in TEMPLATES:
        words.update(w for w in template.split() if not w.startswith("{"))
    return {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(sorted(words))}}


@DATAMODULES.register("captioned-fashion-mnist")
class CaptionedFashionMNISTDataModule(SplitCaptionsMixin, FashionMNISTDataModule):
    """Fashion-MNIST (same splits and arguments as ``fashion-mnist``) with captions (see the module docstring)."""

    #: Word → id of every caption word (ids 0 and 1: padding, unknown); the same for every instance.
    vocab: dict[str, int] = build_vocab()
    #: Caption length in tokens: the longest template, plus one because "ankle boot" is two words.
    text_length: int = max(len(t.split()) for t in TEMPLATES) + 1

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        image_size, self.image_size = self.image_size, 28  # the parent resizes to self.image_size: load native
        try:
            native = super().load_splits()
        finally:
            self.image_size = image_size
        size, tone = measure(native["train"]["image"])
        self.size_cuts = torch.quantile(size, torch.tensor([1 / 3, 2 / 3]))
        self.tone_cuts = torch.quantile(tone, torch.tensor([1 / 3, 2 / 3]))
        gen = torch.Generator().manual_seed(4321)
        self.captions: dict[str, list[str]] = {}
        out = {}
        for split, tensors in native.items():
            s, t = measure(tensors["image"])
            s_idx, t_idx = bucket(s, self.size_cuts), bucket(t, self.tone_cuts)
            choice = torch.randint(len(TEMPLATES), (len(s),), generator=gen)
            self.captions[split] = [
                TEMPLATES[int(c)].format(size=SIZES[int(a)], tone=TONES[int(b)], name=CLASS_NAMES[int(y)])
                for a, b, c, y in zip(s_idx, t_idx, choice, tensors["label"])
            ]
            images = tensors["image"]
            if image_size != 28:
                images = resize_images(images, image_size)
            out[split] = {"image": images, "text": tokenize(self.captions[split], self.vocab, self.text_length),
                          "label": tensors["label"]}
        return out

    def data_spec(self) -> DataSpec:
        return DataSpec.captioned((1, self.image_size, self.image_size), 10, self.vocab, self.text_length)
