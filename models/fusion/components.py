"""Plain ``nn.Module`` pieces of the fusion classifiers: modality tokenizers, a shared encoder, token concatenation.

The tokenizers (:class:`ImageTokens`, :class:`ConvTokens`, :class:`TextTokens`; the ViT and MiniLM ones are in
:mod:`models.fusion.encoders`) map a modality's batch tensor to a (B, T, d) token sequence; the registries
:data:`models.fusion.encoders.IMAGE_ENCODERS` / ``TEXT_ENCODERS`` choose one by name.

:class:`EarlyConcatFusion` (the unimodal baselines' input) follows MultiBench's ``fusions/common_fusions.py``
interface, ``forward(modalities: list[Tensor]) -> Tensor``, like the registered fusion operators
(:mod:`models.fusion.operators`).
"""

from __future__ import annotations

import torch
from torch import nn


class ImageTokens(nn.Module):
    """Cuts an image into non-overlapping patches and embeds each: (B, C, H, W) -> (B, P, d).

    Args:
        image_shape: (C, H, W). patch_size: Side of a square patch (must divide H and W). d_model: Token width.
    """

    def __init__(self, image_shape: tuple[int, int, int], patch_size: int, d_model: int) -> None:
        super().__init__()
        c, h, w = image_shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the image size {h}x{w}")
        self.proj = nn.Conv2d(c, d_model, kernel_size=patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.zeros(1, (h // patch_size) * (w // patch_size), d_model))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, P, d)
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos


class ConvTokens(nn.Module):
    """A small CNN tokenizer: two 3×3 convolutions at full resolution, then one token per patch.

    (B, C, H, W) → conv3×3 (C → d/2) → GELU → conv3×3 (d/2 → d) → GELU → conv with kernel = stride = patch_size
    (d → d) → (B, P, d) plus learned positions. Unlike :class:`ImageTokens` (one linear map per patch), each token
    sees local edges and strokes across patch borders.

    Args:
        image_shape: (C, H, W). patch_size: Side of the cell each token summarizes (must divide H and W).
        d_model: Token width.
    """

    def __init__(self, image_shape: tuple[int, int, int], patch_size: int, d_model: int) -> None:
        super().__init__()
        c, h, w = image_shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the image size {h}x{w}")
        hidden = max(d_model // 2, 1)
        self.features = nn.Sequential(
            nn.Conv2d(c, hidden, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, d_model, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv2d(d_model, d_model, kernel_size=patch_size, stride=patch_size),
        )
        self.pos = nn.Parameter(torch.zeros(1, (h // patch_size) * (w // patch_size), d_model))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, P, d)
        return self.features(x).flatten(2).transpose(1, 2) + self.pos


class TextTokens(nn.Module):
    """Embeds token ids with learned positions: (B, L) -> (B, L, d). Padding is an ordinary learned token."""

    def __init__(self, vocab_size: int, text_length: int, d_model: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, text_length, d_model))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, d)
        return self.embed(ids) + self.pos[:, : ids.shape[1]]


class TokenEncoder(nn.Module):
    """A [CLS] token prepended to a token sequence, a pre-norm Transformer encoder, and the [CLS] output.

    Args:
        d_model: Token width. n_layers: Encoder layers. n_heads: Attention heads. dropout: Dropout rate.
    """

    def __init__(self, d_model: int, n_layers: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, 1 + T, d)
        """Every output token, normalized; position 0 is the [CLS] token."""
        cls = self.cls.expand(tokens.shape[0], -1, -1)  # (B, 1, d)
        return self.norm(self.encoder(torch.cat([cls, tokens], dim=1)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, d)
        return self.forward_tokens(tokens)[:, 0]


class ClsReadout(nn.Module):
    """The encoder of a modality whose tokenizer is already a full Transformer encoder (e.g. the ViT).

    It adds nothing: ``forward_tokens`` returns the tokens unchanged, ``forward`` the [CLS] token at position 0.
    """

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, 1 + T, d) -> (B, 1 + T, d)
        return tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, 1 + T, d) -> (B, d)
        return tokens[:, 0]


class EarlyConcatFusion(nn.Module):
    """Early fusion: adds a learned modality embedding to each token sequence and concatenates them.

    ``forward([(B, T1, d), (B, T2, d), ...]) -> (B, T1 + T2 + ..., d)``, to be read by one shared encoder.
    """

    def __init__(self, num_modalities: int, d_model: int) -> None:
        super().__init__()
        self.modality = nn.Parameter(torch.zeros(num_modalities, 1, 1, d_model))
        nn.init.normal_(self.modality, std=0.02)

    def forward(self, modalities: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([tokens + self.modality[i] for i, tokens in enumerate(modalities)], dim=1)
