"""Image tokenizers: images ↔ sequences of discrete tokens for transformer generators.

Two kinds, both frozen (no trainable parameters) and deterministic:

* :class:`PixelTokenizer` — quantized intensities of a (optionally area-downsampled) grayscale image, in raster
  order: token = clamp(floor(x · levels), 0, levels − 1); decoding maps a token to the centre of its bin,
  (token + 0.5) / levels, and upsamples bilinearly back to the image size when it was downsampled.
* :class:`VQTokenizer` — the code grid of a trained ``vq-vae`` (models/vae/vq_vae.py) read from a weights file
  saved by :meth:`models.base.BenchModule.save_weights`.

:data:`TOKENIZERS` registers a builder of each by name (the models' ``tokenizer`` hyperparameter), and
:func:`build_tokenizer` builds one from plain values, so the models that own a tokenizer keep their hyperparameters
``save_hyperparameters``-friendly. A new kind is one more ``@TOKENIZERS.register(name)`` builder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import Registry


class ImageTokenizer(nn.Module):
    """Base class: a frozen map between images and token sequences.

    Attributes:
        vocab_size: Number of distinct tokens (ids are 0 … vocab_size − 1).
        seq_len: Tokens per image.
        image_shape: (C, H, W) of the images ``decode`` returns (and ``encode`` expects).
    """

    vocab_size: int
    seq_len: int
    image_shape: tuple[int, int, int]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) float in [0, 1] → tokens (B, seq_len) long."""
        raise NotImplementedError

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, seq_len) long → images (B, C, H, W) float in [0, 1]."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short name stating everything that changes the tokens (recorded in protocols)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)


class PixelTokenizer(ImageTokenizer):
    """Quantized intensities of a grayscale image in raster order.

    Args:
        image_shape: (1, H, W) of the images.
        levels: Number of intensity levels (the vocabulary size).
        size: If given, images are area-downsampled (``F.adaptive_avg_pool2d``) to size × size before quantizing
            and decoded images are upsampled back (bilinear); None keeps H × W.

    Raises:
        ValueError: For images with more than one channel or fewer than 2 levels.
    """

    def __init__(self, image_shape: tuple[int, int, int], levels: int = 16, size: int | None = None) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        channels, height, width = self.image_shape
        if channels != 1:
            raise ValueError(f"PixelTokenizer needs grayscale images (C=1), got image_shape={self.image_shape}")
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.levels = int(levels)
        self.grid = (int(size), int(size)) if size else (height, width)
        self.vocab_size = self.levels
        self.seq_len = self.grid[0] * self.grid[1]

    @property
    def resized(self) -> bool:
        """Whether the token grid differs from the image size."""
        return self.grid != tuple(self.image_shape[1:])

    def encode(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, h·w)
        x = images.float()
        if self.resized:
            x = F.adaptive_avg_pool2d(x, self.grid)  # (B, 1, h, w) area average
        tokens = torch.floor(x * self.levels).clamp(0, self.levels - 1).long()
        return tokens.flatten(1)  # raster order

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, h·w) -> (B, 1, H, W)
        x = (tokens.float() + 0.5) / self.levels  # bin centres
        x = x.view(len(tokens), 1, *self.grid)  # (B, 1, h, w)
        if self.resized:
            x = F.interpolate(x, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return x.clamp(0.0, 1.0)

    def describe(self) -> str:
        return f"pixel-{self.levels}levels-{self.grid[0]}x{self.grid[1]}"


class VQTokenizer(ImageTokenizer):
    """The code grid of a trained ``vq-vae`` as tokens (raster order over its (h, w) latent grid).

    Args:
        weights_path: A file written by ``BenchModule.save_weights`` for a ``vq-vae`` (read with
            ``weights_only=True``).

    Raises:
        FileNotFoundError: If the file does not exist (the message says how to produce it).
    """

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"VQ tokenizer weights not found at {str(path)!r}. Train the tokenizer first: run a suite that "
                "includes the `vq-vae` model with `bench run` (it saves runs/<suite>/weights/<run>.pt), or call "
                "`VQVAE.save_weights(path)` on a trained model, then pass that .pt file as `tokenizer_weights`."
            )
        from models.vae.vq_vae import VQVAE  # local import: the VAE family is only needed for this tokenizer

        vq = VQVAE.load_weights(path)
        vq.eval()
        for p in vq.parameters():
            p.requires_grad_(False)
        self.vq = vq
        self.weights_path = str(path)
        self.image_shape = tuple(int(s) for s in vq.image_shape)  # type: ignore[assignment]
        self.latent_shape = tuple(vq.latent_shape)
        self.vocab_size = int(vq.hparams.num_codes)
        self.seq_len = self.latent_shape[0] * self.latent_shape[1]

    def train(self, mode: bool = True) -> VQTokenizer:
        """Stays in eval mode whatever the owner does (the tokenizer is frozen)."""
        super().train(False)
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, h·w)
        return self.vq.encode_indices(images.float()).flatten(1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, h·w) -> (B, C, H, W)
        grid = tokens.long().view(len(tokens), *self.latent_shape)  # (B, h, w)
        return self.vq.decode_indices(grid).clamp(0.0, 1.0)

    def describe(self) -> str:
        h, w = self.latent_shape
        return f"vq-{self.vocab_size}codes-{h}x{w}({Path(self.weights_path).name})"


#: Image tokenizers by name (the ``tokenizer`` hyperparameter): builders ``(image_shape, levels, size, weights)``
#: → :class:`ImageTokenizer`, each taking the arguments of :func:`build_tokenizer` and using those of its kind.
TOKENIZERS: Registry[Callable[..., ImageTokenizer]] = Registry("tokenizer")


@TOKENIZERS.register("pixel")
def pixel_tokenizer(image_shape: tuple[int, int, int], levels: int = 16, size: int | None = None,
                    weights: str | None = None) -> PixelTokenizer:
    """:class:`PixelTokenizer` with its grid side capped at the image side (small images are never upsampled);
    ``weights`` is unused."""
    return PixelTokenizer(image_shape, levels=levels, size=min(int(size), int(image_shape[1])) if size else None)


@TOKENIZERS.register("vq")
def vq_tokenizer(image_shape: tuple[int, int, int], levels: int = 16, size: int | None = None,
                 weights: str | None = None) -> VQTokenizer:
    """:class:`VQTokenizer` of the ``vq-vae`` weights file ``weights``, checked against the data's image shape;
    ``levels`` and ``size`` are unused (the VQ-VAE fixes its codes and grid).

    Raises:
        ValueError: Without weights, or for a VQ-VAE trained on images of another shape.
    """
    if not weights:
        raise ValueError("tokenizer='vq' needs tokenizer weights: a `vq-vae` .pt file saved by save_weights")
    tok = VQTokenizer(weights)
    if tuple(tok.image_shape) != tuple(int(s) for s in image_shape):
        raise ValueError(f"the vq-vae at {weights!r} encodes images {tok.image_shape}, the data has {image_shape}")
    return tok


def build_tokenizer(
    image_shape: tuple[int, int, int],
    kind: str = "pixel",
    levels: int = 16,
    size: int | None = None,
    weights: str | None = None,
) -> ImageTokenizer:
    """Builds the registered image tokenizer ``kind`` from plain values (a model's hyperparameters).

    Args:
        image_shape: (C, H, W) of the dataset's images.
        kind: A name of :data:`TOKENIZERS`: "pixel" (:class:`PixelTokenizer`) or "vq" (:class:`VQTokenizer`).
        levels: Intensity levels of the pixel tokenizer.
        size: Token grid side of the pixel tokenizer, capped at the image side so small images are never
            upsampled (None or 0: the image size).
        weights: Path of the ``vq-vae`` weights file of the VQ tokenizer.

    Raises:
        ValueError: For an unknown kind (an :class:`~bench.registry.UnknownNameError` listing the registered
            ones), a VQ tokenizer without weights, or a VQ-VAE trained on other images.
    """
    return TOKENIZERS.get(kind)(image_shape, levels=levels, size=size, weights=weights)
