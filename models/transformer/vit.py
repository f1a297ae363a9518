"""Vision Transformer (Dosovitskiy et al., 2021): an image encoder, and a registered classifier built on it.

:class:`ViTEncoder` is a plain ``nn.Module`` (patch embedding by a strided convolution, a learned [CLS] token,
learned positions, pre-LN Transformer encoder blocks, a final LayerNorm); the fusion models may use it as their
image encoder. :class:`ViTClassifier` (``vit``) is a linear head on its [CLS] output, so the encoder can be
benchmarked by itself.

The encoder blocks (:class:`EncoderBlock`) attend bidirectionally (no causal mask) through
``F.scaled_dot_product_attention``; :mod:`models.transformer.maskgit` reuses them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Classifier
from models.registry import MODELS


class SelfAttention(nn.Module):
    """Multi-head bidirectional self-attention (every token attends to every token).

    Args:
        dim: Token width (divisible by ``heads``). heads: Attention heads. dropout: Attention and output dropout.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)  # 3 × (B, T, D)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.proj_drop(self.proj(y))


class EncoderBlock(nn.Module):
    """Pre-LN Transformer encoder block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU MLP).

    Args:
        dim: Token width. heads: Attention heads. mlp_ratio: MLP hidden width / ``dim``. dropout: Dropout rate.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(round(mlp_ratio * dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_transformer_weights(module: nn.Module) -> None:
    """ViT / nanoGPT initialization: Linear and Embedding weights N(0, 0.02), zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def patch_divisors(size: int) -> list[int]:
    """The patch sides (> 0) that divide ``size``."""
    return [p for p in range(1, size + 1) if size % p == 0]


class ViTEncoder(nn.Module):
    """Vision Transformer encoder: (B, C, H, W) images → (B, dim) [CLS] features.

    Args:
        image_shape: (C, H, W) of the input images.
        patch_size: Side of the square non-overlapping patches; must divide H and W unless ``pad`` is True.
        dim: Token width. depth: Number of encoder blocks. heads: Attention heads (must divide ``dim``).
        mlp_ratio: MLP hidden width / ``dim``. dropout: Dropout rate (embeddings, attention, MLP).
        pad: Zero-pad the bottom and right of the image up to a multiple of ``patch_size`` instead of raising.

    Attributes:
        out_dim: Width of :meth:`forward`'s output (= ``dim``).
        grid: (H', W') number of patches along each side; ``num_patches = H'·W'``.

    Raises:
        ValueError: If ``patch_size`` does not divide H and W (and ``pad`` is False), or ``heads`` does not
            divide ``dim``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pad: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        if not pad and (h % patch_size or w % patch_size):
            common = sorted(set(patch_divisors(h)) & set(patch_divisors(w)))
            raise ValueError(
                f"ViT patch_size {patch_size} does not divide the image size {h}x{w}; choose one of {common} "
                f"or pass pad=True to zero-pad the image to a multiple of the patch size"
            )
        if dim % heads:
            raise ValueError(f"ViT dim {dim} must be divisible by heads {heads}")
        self.image_shape = (c, h, w)
        self.patch_size, self.pad, self.out_dim = patch_size, pad, dim
        self.grid = (math.ceil(h / patch_size), math.ceil(w / patch_size))
        self.num_patches = self.grid[0] * self.grid[1]

        self.patch_embed = nn.Conv2d(c, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.num_patches, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

        self.apply(init_transformer_weights)
        nn.init.normal_(self.cls, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N, D)
        """Embeds each patch (after padding, when enabled): one token per patch, row-major."""
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"ViTEncoder expects images of shape {self.image_shape}, got {tuple(x.shape[1:])}")
        if self.pad:
            _, h, w = self.image_shape
            p = self.patch_size
            x = F.pad(x, (0, -w % p, 0, -h % p))  # zeros on the right and bottom
        return self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, D, H', W') -> (B, N, D)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1 + N, D)
        """Every output token after the final LayerNorm; position 0 is the [CLS] token."""
        tokens = self.patchify(x)  # (B, N, D)
        cls = self.cls.expand(len(tokens), -1, -1)  # (B, 1, D)
        z = self.drop(torch.cat([cls, tokens], dim=1) + self.pos)  # (B, 1 + N, D)
        for block in self.blocks:
            z = block(z)
        return self.norm(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, D)
        """The [CLS] output after the final LayerNorm."""
        return self.forward_tokens(x)[:, 0]


@MODELS.register("vit")
class ViTClassifier(Classifier):
    """Image classification by a Vision Transformer: a linear head on the [CLS] feature of :class:`ViTEncoder`.

    Trained with cross-entropy; logs ``{stage}_loss`` and ``{stage}_acc`` for train / val / test.

    Args:
        image_shape: (C, H, W) of ``batch["image"]`` (from the datamodule).
        num_classes: Number of classes (from the datamodule).
        patch_size: Patch side (must divide H and W unless ``pad``). dim: Token width. depth: Encoder blocks.
        heads: Attention heads. mlp_ratio: MLP width / dim. dropout: Dropout rate.
        pad: Zero-pad images to a multiple of the patch size.
        lr: AdamW learning rate. weight_decay: AdamW weight decay.
    """

    family = "transformer"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        num_classes: int = 10,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pad: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_shape = tuple(image_shape)
        self.encoder = ViTEncoder(self.image_shape, patch_size, dim, depth, heads, mlp_ratio, dropout, pad)
        self.head = nn.Linear(self.encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.encoder(x))

    def predict_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # -> (B, K)
        return self(batch["image"])

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self.predict_logits(batch)  # (B, K)
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        self.log_dict({f"{stage}_loss": loss, f"{stage}_acc": acc}, prog_bar=True, batch_size=len(logits),
                      sync_dist=stage != "train")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
