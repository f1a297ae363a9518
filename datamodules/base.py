"""Datamodule bases: what the runner, the models and the evaluator may ask of a dataset.

Every batch is a dict of tensors: ``{"image": (B, C, H, W) float in [0, 1], "label": (B,) long}`` for image
datasets, plus ``"text": (B, L) long`` token ids for image+text datasets. Splits are ``train``, ``val`` and
``test`` and are deterministic: they never depend on the run's seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from bench.errors import InputError
from datamodules.resumable import ResumableDataLoader, ResumableRandomSampler

SPLITS = ("train", "val", "test")


class DataUnavailableError(InputError, RuntimeError):
    """The dataset's files could not be found or fetched; the message says how to get them."""


@dataclass(frozen=True)
class DataSpec:
    """Shape facts a model needs to build itself for a dataset.

    Attributes:
        image_shape: (C, H, W) of the ``image`` tensors.
        num_classes: Number of classes of ``label``.
        vocab_size: Size of the token vocabulary of ``text`` (0 when there is no text).
        text_length: Length L of ``text`` (0 when there is no text).
        modalities: Names of the input modalities, in the order fusion models receive them.
        id_to_word: The caption vocabulary, ``id_to_word[i]`` the word of token id ``i`` (id 0 is padding); empty
            when there is no text. Models that read captions as strings (a pretrained text encoder) decode with it.
    """

    image_shape: tuple[int, int, int]
    num_classes: int
    vocab_size: int = 0
    text_length: int = 0
    modalities: tuple[str, ...] = field(default=("image",))
    id_to_word: tuple[str, ...] = ()

    @classmethod
    def captioned(
        cls, image_shape: tuple[int, int, int], num_classes: int, vocab: dict[str, int], text_length: int
    ) -> DataSpec:
        """The spec of image + caption data whose captions are ``text_length`` ids from ``vocab`` (word → id)."""
        return cls(
            image_shape=image_shape,
            num_classes=num_classes,
            vocab_size=len(vocab),
            text_length=text_length,
            modalities=("image", "text"),
            id_to_word=tuple(sorted(vocab, key=vocab.__getitem__)),
        )

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
            "vocab_size": self.vocab_size,
            "text_length": self.text_length,
            "modalities": self.modalities,
            "id_to_word": self.id_to_word,
        }


class TensorDictDataset(Dataset):
    """A map-style dataset over equally long tensors, returning one dict per index."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"all tensors must have the same length, got {[(k, len(v)) for k, v in tensors.items()]}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


class BenchDataModule(pl.LightningDataModule):
    """Base for every registered datamodule.

    Subclasses load all three splits into memory in :meth:`load_splits` (the datasets here are small enough),
    and describe their shapes in :meth:`data_spec`.

    Args:
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers (0 keeps runs deterministic and is fastest for in-memory data).
    """

    registry_name: str
    #: Where the data comes from, shown by ``bench list datamodules``: ships offline, or needs the hub.
    data_source: ClassVar[str] = "offline"

    def __init__(self, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._splits: dict[str, dict[str, torch.Tensor]] | None = None

    # ----------------------------------------------------------------------------------------------- subclass API
    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        """Returns ``{split: {"image": ..., "label": ..., ...}}`` for every split in :data:`SPLITS`."""
        raise NotImplementedError

    def data_spec(self) -> DataSpec:
        """Shapes of this dataset's tensors (may call :meth:`setup`)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------- lightning API
    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            splits = self.load_splits()
            missing = set(SPLITS) - set(splits)
            if missing:
                raise RuntimeError(f"{type(self).__name__}.load_splits() did not return splits {sorted(missing)}")
            self._splits = splits

    def split_tensors(self, split: str) -> dict[str, torch.Tensor]:
        """All tensors of one split, e.g. ``split_tensors("test")["image"]`` is (N, C, H, W)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    def dataloader(self, split: str, shuffle: bool = False, batch_size: int | None = None) -> DataLoader:
        """A DataLoader over one split; shuffling uses torch's global RNG (seeded by the runner), in the order
        ``shuffle=True`` gives, through a sampler whose epoch order a checkpoint can resume part-way."""
        dataset = TensorDictDataset(**self.split_tensors(split))
        return ResumableDataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=ResumableRandomSampler(dataset) if shuffle else None,
            num_workers=self.num_workers,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    # ---------------------------------------------------------------------------------------------- provenance
    def identity(self) -> str:
        """A short string naming everything that changes this dataset's tensors (used in cache keys).

        Built from the constructor arguments saved by ``save_hyperparameters()``, less the loader settings.
        """
        args = {k: v for k, v in sorted(self.hparams.items()) if k not in _LOADER_ARGS}
        digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.registry_name}-{digest}"


_LOADER_ARGS = frozenset({"batch_size", "num_workers"})


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resizes (N, C, H, W) float images to (N, C, size, size) with antialiased bilinear interpolation.

    ``None`` or the current size returns the input unchanged.
    """
    if size is None or (images.shape[-1] == size and images.shape[-2] == size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def stratified_split(labels: torch.Tensor, fractions: tuple[float, float], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic stratified train/val/test index split.

    Args:
        labels: (N,) integer labels.
        fractions: (val_fraction, test_fraction) of each class.
        seed: Seed of the permutation; fixed so the split never changes with the run's seed.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each a sorted (n,) long tensor.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val, n_test = round(fractions[0] * len(idx)), round(fractions[1] * len(idx))
        out["val"].append(idx[:n_val])
        out["test"].append(idx[n_val : n_val + n_test])
        out["train"].append(idx[n_val + n_test :])
    return {s: torch.sort(torch.cat(v)).values for s, v in out.items()}


class SplitCaptionsMixin:
    """``caption_strings(split)`` for a captioned datamodule whose ``load_splits`` fills ``self.captions`` with one
    list of caption strings per split, in the order of that split's tensors. (Mixed into a BenchDataModule.)"""

    captions: dict[str, list[str]]

    def caption_strings(self, split: str) -> list[str]:
        """The caption strings of ``split``, in the order of ``split_tensors(split)`` (e.g. for CLIP score).

        Raises:
            ValueError: If ``split`` is not train, val or test.
        """
        self.split_tensors(split)  # type: ignore[attr-defined]  # validates the split and loads the data
        return list(self.captions[split])
