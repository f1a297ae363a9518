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

A classifier reads the tokens of a modality with its own small Transformer (:class:`TokenEncoder`) in mid and late
fusion, or concatenates them with the other modality's before one shared Transformer in early fusion. A *full*
encoder (:attr:`is_full_encoder`, the ViT) is already a trainable Transformer ending in a [CLS] token: mid and late
fusion then read it as is (:class:`ClsReadout`), and early fusion feeds its contextual tokens to the shared encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.components import ConvTokens, ImageTokens, TextTokens
from models.transformer.vit import ViTEncoder

IMAGE_ENCODERS = ("cnn", "patch", "vit")
TEXT_ENCODERS = ("minilm", "transformer")


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


def _unknown(what: str, kind: str, accepted: tuple[str, ...]) -> ValueError:
    return ValueError(f"unknown {what} {kind!r}; accepted: {', '.join(accepted)}")


def check_encoder_kinds(image_encoder: str | None = None, text_encoder: str | None = None) -> None:
    """Raises ValueError (listing the accepted names) unless the given encoder names are known."""
    if image_encoder is not None and image_encoder not in IMAGE_ENCODERS:
        raise _unknown("image_encoder", image_encoder, IMAGE_ENCODERS)
    if text_encoder is not None and text_encoder not in TEXT_ENCODERS:
        raise _unknown("text_encoder", text_encoder, TEXT_ENCODERS)


def build_image_encoder(kind: str, image_shape: tuple[int, int, int], d_model: int, patch_size: int = 4,
                        n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1) -> nn.Module:
    """An image tokenizer: (B, C, H, W) → (B, T, d_model).

    Args:
        kind: One of :data:`IMAGE_ENCODERS`.
        image_shape: (C, H, W). d_model: Token width. patch_size: Patch side (every kind: one token per patch).
        n_layers, n_heads, dropout: The ViT's depth, heads and dropout (``vit`` only).

    Raises:
        ValueError: If ``kind`` is unknown (the message lists the accepted names) or the patch does not tile
            the image.
    """
    check_encoder_kinds(image_encoder=kind)
    if kind == "vit":
        return ViTTokens(image_shape, patch_size, d_model, n_layers, n_heads, dropout)
    tokenizer = ConvTokens if kind == "cnn" else ImageTokens
    return tokenizer(tuple(image_shape), patch_size, d_model)


def build_text_encoder(kind: str, vocab_size: int, text_length: int, d_model: int,
                       id_to_word: tuple[str, ...] = (), finetune: bool = False) -> nn.Module:
    """A caption tokenizer: (B, L) token ids → (B, T, d_model).

    Args:
        kind: One of :data:`TEXT_ENCODERS`.
        vocab_size: Vocabulary size. text_length: Caption length L. d_model: Token width.
        id_to_word: The vocabulary as strings (``minilm`` decodes the ids with it; ``DataSpec.id_to_word``).
        finetune: Fine-tune the pretrained MiniLM instead of freezing it (``minilm`` only).

    Raises:
        ValueError: If ``kind`` is unknown (the message lists the accepted names), or ``minilm`` gets no
            ``id_to_word``.
    """
    check_encoder_kinds(text_encoder=kind)
    if kind == "minilm":
        from models.fusion.minilm import MiniLMTokens  # imports transformers: only when asked for

        return MiniLMTokens(tuple(id_to_word), text_length, d_model, finetune=finetune)
    return TextTokens(vocab_size, text_length, d_model)
