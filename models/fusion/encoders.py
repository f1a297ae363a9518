"""Modality encoders of the fusion classifiers, chosen by name (hparams ``image_encoder`` and ``text_encoder``).

Every encoder built here maps one modality's batch tensor to a token sequence of the classifier's width ``d``:

=================  =====  ==============================================================================  ==========
name               input  tokens                                                                          full
=================  =====  ==============================================================================  ==========
``patch``          image  one linear patch embedding per patch + positions (:class:`ImageTokens`)         no
``cnn``            image  two 3×3 convolutions, then one token per patch (:class:`ConvTokens`)            no
``vit``            image  the Vision Transformer's output tokens, [CLS] first (:class:`ViTTokens`)        yes
``transformer``    text   learned word embeddings + positions (:class:`TextTokens`)                       no
``minilm``         text   frozen pretrained all-MiniLM-L6-v2 token states, projected (:class:`MiniLMTokens`)  no
=================  =====  ==============================================================================  ==========

Each name is registered in :data:`IMAGE_ENCODERS` or :data:`TEXT_ENCODERS` with a builder taking the arguments of
:func:`build_image_encoder` / :func:`build_text_encoder`; a new encoder is one more ``@IMAGE_ENCODERS.register``
(or ``@TEXT_ENCODERS.register``) builder.

A classifier reads the tokens of a modality with its own small Transformer (:class:`TokenEncoder`) in mid and late
fusion, or concatenates them with the other modality's before one shared Transformer in early fusion. A *full*
encoder (:attr:`is_full_encoder`, the ViT) is already a trainable Transformer ending in a [CLS] token: mid and late
fusion then read it as is (:class:`ClsReadout`), and early fusion feeds its contextual tokens to the shared encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bench.registry import Registry
from models.fusion.components import ConvTokens, ImageTokens, TextTokens
from models.transformer.vit import ViTEncoder


class ViTTokens(nn.Module):
    """The Vision Transformer as an image tokenizer: (B, C, H, W) → (B, 1 + N, d) contextual tokens, [CLS] first.

    Args:
        image_shape: (C, H, W). patch_size: Patch side (must divide H and W). d_model: Token width (the ViT's).
        n_layers: ViT blocks. n_heads: Attention heads. dropout: Dropout rate.
        mlp_ratio: MLP width / ``d_model`` (2, as in the classifiers' :class:`TokenEncoder`).
    """

    is_full_encoder = True

    def __init__(self, image_shape: tuple[int, int, int], patch_size: int, d_model: int, n_layers: int,
                 n_heads: int, dropout: float, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.vit = ViTEncoder(tuple(image_shape), patch_size, d_model, n_layers, n_heads, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1 + N, d)
        return self.vit.forward_tokens(x)


#: Image encoders by name (hparam ``image_encoder``): builders ``(image_shape, d_model, patch_size, n_layers, n_heads,
#: dropout)`` → a module mapping (B, C, H, W) to (B, T, d_model); each uses the arguments its kind needs.
IMAGE_ENCODERS: Registry[Callable[..., nn.Module]] = Registry("image encoder")
#: Text encoders by name (hparam ``text_encoder``): builders ``(vocab_size, text_length, d_model, id_to_word,
#: finetune)`` → a module mapping (B, L) token ids to (B, T, d_model).
TEXT_ENCODERS: Registry[Callable[..., nn.Module]] = Registry("text encoder")


@IMAGE_ENCODERS.register("patch")
def patch_encoder(image_shape: tuple[int, int, int], d_model: int, patch_size: int, n_layers: int, n_heads: int,
                  dropout: float) -> ImageTokens:
    """One linear patch embedding per patch + positions (:class:`ImageTokens`)."""
    return ImageTokens(tuple(image_shape), patch_size, d_model)


@IMAGE_ENCODERS.register("cnn")
def cnn_encoder(image_shape: tuple[int, int, int], d_model: int, patch_size: int, n_layers: int, n_heads: int,
                dropout: float) -> ConvTokens:
    """Two 3×3 convolutions, then one token per patch (:class:`ConvTokens`)."""
    return ConvTokens(tuple(image_shape), patch_size, d_model)


@IMAGE_ENCODERS.register("vit")
def vit_encoder(image_shape: tuple[int, int, int], d_model: int, patch_size: int, n_layers: int, n_heads: int,
                dropout: float) -> ViTTokens:
    """The Vision Transformer's output tokens, [CLS] first (:class:`ViTTokens`, a full encoder)."""
    return ViTTokens(tuple(image_shape), patch_size, d_model, n_layers, n_heads, dropout)


@TEXT_ENCODERS.register("transformer")
def transformer_text_encoder(vocab_size: int, text_length: int, d_model: int, id_to_word: tuple[str, ...] = (),
                             finetune: bool = False) -> TextTokens:
    """Learned word embeddings + positions (:class:`TextTokens`); ``id_to_word`` and ``finetune`` are unused."""
    return TextTokens(vocab_size, text_length, d_model)


@TEXT_ENCODERS.register("minilm")
def minilm_text_encoder(vocab_size: int, text_length: int, d_model: int, id_to_word: tuple[str, ...] = (),
                        finetune: bool = False) -> nn.Module:
    """Frozen (or, with ``finetune``, trained) pretrained all-MiniLM-L6-v2 token states, projected
    (:class:`~models.fusion.minilm.MiniLMTokens`); it decodes the ids with ``id_to_word``."""
    from models.fusion.minilm import MiniLMTokens  # imports transformers: only when asked for

    return MiniLMTokens(tuple(id_to_word), text_length, d_model, finetune=finetune)


def _unknown(what: str, kind: str, accepted: list[str]) -> ValueError:
    return ValueError(f"unknown {what} {kind!r}; accepted: {', '.join(accepted)}")


def check_encoder_kinds(image_encoder: str | None = None, text_encoder: str | None = None) -> None:
    """Raises ValueError (naming the hparam and listing the registered names) unless the given names are known."""
    if image_encoder is not None and image_encoder not in IMAGE_ENCODERS:
        raise _unknown("image_encoder", image_encoder, IMAGE_ENCODERS.names())
    if text_encoder is not None and text_encoder not in TEXT_ENCODERS:
        raise _unknown("text_encoder", text_encoder, TEXT_ENCODERS.names())


def build_image_encoder(kind: str, image_shape: tuple[int, int, int], d_model: int, patch_size: int = 4,
                        n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1) -> nn.Module:
    """An image tokenizer: (B, C, H, W) → (B, T, d_model), the builder registered as ``kind``.

    Args:
        kind: A name of :data:`IMAGE_ENCODERS`.
        image_shape: (C, H, W). d_model: Token width. patch_size: Patch side (every kind: one token per patch).
        n_layers, n_heads, dropout: The ViT's depth, heads and dropout (``vit`` only).

    Raises:
        ValueError: If ``kind`` is unknown (the message lists the accepted names) or the patch does not tile
            the image.
    """
    check_encoder_kinds(image_encoder=kind)
    return IMAGE_ENCODERS.get(kind)(image_shape, d_model, patch_size, n_layers, n_heads, dropout)


def build_text_encoder(kind: str, vocab_size: int, text_length: int, d_model: int,
                       id_to_word: tuple[str, ...] = (), finetune: bool = False) -> nn.Module:
    """A caption tokenizer: (B, L) token ids → (B, T, d_model), the builder registered as ``kind``.

    Args:
        kind: A name of :data:`TEXT_ENCODERS`.
        vocab_size: Vocabulary size. text_length: Caption length L. d_model: Token width.
        id_to_word: The vocabulary as strings (``minilm`` decodes the ids with it; ``DataSpec.id_to_word``).
        finetune: Fine-tune the pretrained MiniLM instead of freezing it (``minilm`` only).

    Raises:
        ValueError: If ``kind`` is unknown (the message lists the accepted names), or ``minilm`` gets no
            ``id_to_word``.
    """
    check_encoder_kinds(text_encoder=kind)
    return TEXT_ENCODERS.get(kind)(vocab_size, text_length, d_model, tuple(id_to_word), finetune)
