"""Test-time corruptions of one modality, for robustness evaluation (MultiBench-style).

A batch is the datamodules' dict: ``image`` (B, C, H, W) float in [0, 1], ``text`` (B, L) token ids with ``0`` as
padding (the suite's convention, see :mod:`datamodules.captioned_digits`), ``label`` (B,). Every function returns a
new dict and leaves the other modalities untouched.

* **drop**: the modality is missing: a black image (all zeros), or a caption of padding only;
* **noise** at level ``s``: images get additive Gaussian noise of standard deviation ``s`` (then clipped to
  [0, 1]); captions have each non-padding token replaced, with probability ``s``, by a uniformly drawn word
  (ids ``2..vocab_size-1``: neither padding nor unknown).

Noise is drawn from the given ``torch.Generator``, so a corrupted test set is the same for every model.
"""

from __future__ import annotations

import torch

PAD_ID = 0
FIRST_WORD_ID = 2  # ids 0 and 1 are padding and unknown
MODALITIES = ("image", "text")


def _check(batch: dict[str, torch.Tensor], modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; corruptions exist for: {', '.join(MODALITIES)}")
    if modality not in batch:
        raise ValueError(f"the batch has no {modality!r} (it has {sorted(batch)})")


def drop_modality(batch: dict[str, torch.Tensor], modality: str) -> dict[str, torch.Tensor]:
    """The batch with ``modality`` missing: zeros for images, padding for text."""
    _check(batch, modality)
    missing = torch.zeros_like(batch["image"]) if modality == "image" else torch.full_like(batch["text"], PAD_ID)
    return {**batch, modality: missing}


def add_noise(batch: dict[str, torch.Tensor], modality: str, level: float, vocab_size: int = 0,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The batch with ``modality`` corrupted at ``level`` (see the module docstring).

    Args:
        level: Gaussian standard deviation for images; replacement probability in [0, 1] for text.
        vocab_size: Vocabulary size (text only).
        generator: CPU generator of the noise.
    """
    _check(batch, modality)
    if level < 0 or (modality == "text" and level > 1):
        raise ValueError(f"noise level for {modality} must be in {'[0, 1]' if modality == 'text' else '[0, inf)'}, got {level}")
    if modality == "image":
        x = batch["image"]
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        return {**batch, "image": (x + level * noise).clamp(0, 1)}
    ids = batch["text"]
    if vocab_size <= FIRST_WORD_ID:
        raise ValueError(f"text noise needs vocab_size > {FIRST_WORD_ID}, got {vocab_size}")
    replace = (torch.rand(ids.shape, generator=generator) < level).to(ids.device) & (ids != PAD_ID)
    words = torch.randint(FIRST_WORD_ID, vocab_size, ids.shape, generator=generator).to(ids.device)
    return {**batch, "text": torch.where(replace, words, ids)}
