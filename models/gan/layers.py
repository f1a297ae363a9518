"""Building blocks of ProGAN and StyleGAN (Karras et al., 2018; 2019): equalized learning rate layers, pixel
normalization, minibatch standard deviation, and the progressive critic both models use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: He gain of LeakyReLU(0.2) layers, as in the reference code (sqrt(2)).
RELU_GAIN = math.sqrt(2.0)


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate: weights ~ N(0, 1/lr_mul²), scaled at run time by
    ``gain / sqrt(fan_in) · lr_mul``, so that Adam's per-parameter step is the same for every layer.

    Args:
        in_features: Input size. out_features: Output size.
        gain: Target gain of the layer (sqrt(2) before a LeakyReLU, 1 for linear outputs).
        lr_mul: Learning-rate multiplier (0.01 for StyleGAN's mapping network).
        bias_init: Initial value of the effective bias.
    """

    def __init__(self, in_features: int, out_features: int, gain: float = RELU_GAIN, lr_mul: float = 1.0,
                 bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.scale = gain / math.sqrt(in_features) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualizedConv2d(nn.Module):
    """Square "same" convolution with equalized learning rate (weights ~ N(0, 1), scaled by gain/sqrt(fan_in)).

    Args:
        in_channels: Input channels. out_channels: Output channels. kernel_size: Kernel side.
        gain: Target gain (sqrt(2) before a LeakyReLU, 1 for toRGB). padding: Zero padding (default k // 2).
        bias: Whether to add a learned bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = RELU_GAIN,
                 padding: int | None = None, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H', W')
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Normalizes every pixel's feature vector to unit mean square (ProGAN's generator normalization)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, ...) -> same
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MinibatchStdDev(nn.Module):
    """Appends one channel holding the batch-average standard deviation of the features (ProGAN, §3).

    The standard deviation of each feature at each pixel is taken over the whole minibatch (population form,
    so a batch of 1 gives ~0 rather than NaN), averaged into one scalar and replicated over a new channel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C + 1, H, W)
        std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-8).mean()  # scalar
        return torch.cat([x, std.expand(x.shape[0], 1, x.shape[2], x.shape[3])], dim=1)


def level_channels(num_levels: int, width: int, max_channels: int) -> list[int]:
    """Channels of each level (4·2^k px): ``width`` at the finest, doubled at each coarser one, capped."""
    return [min(width * 2 ** (num_levels - 1 - k), max_channels) for k in range(num_levels)]


def num_levels_for(side: int) -> int:
    """Number of resolutions 4, 8, ..., up to ``side`` (a power of two >= 8)."""
    return int(math.log2(side)) - 1


class ProgressiveDiscriminator(nn.Module):
    """ProGAN critic for resolutions 4·2^k, k < num_levels, with fade-in of each new input level.

    Level k >= 1: fromRGB_k (1×1 conv) → [3×3 conv, 3×3 conv, 2× average pool] → ... → the 4×4 head. The head is
    minibatch stddev → 3×3 conv → 4×4 valid conv → linear score. No normalization layers.

    Args:
        in_channels: Image channels. channels: Feature channels of each level (coarsest first).
    """

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        self.num_levels = len(channels)
        act = nn.LeakyReLU(0.2)
        self.from_rgb = nn.ModuleList(
            nn.Sequential(EqualizedConv2d(in_channels, c, 1), nn.LeakyReLU(0.2)) for c in channels
        )
        self.blocks = nn.ModuleList([nn.Identity()])  # level 0 has no block, only the head
        for k in range(1, self.num_levels):
            self.blocks.append(nn.Sequential(
                EqualizedConv2d(channels[k], channels[k], 3), act,
                EqualizedConv2d(channels[k], channels[k - 1], 3), act,
                nn.AvgPool2d(2),
            ))
        c0 = channels[0]
        self.head = nn.Sequential(
            MinibatchStdDev(),
            EqualizedConv2d(c0 + 1, c0, 3), act,
            EqualizedConv2d(c0, c0, 4, padding=0), act,  # (B, c0, 1, 1)
            nn.Flatten(),
            EqualizedLinear(c0, 1, gain=1.0),
        )

    def forward(self, x: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Scores of images at level ``level`` (default: the finest), (B, C, 4·2^level, ·) -> (B, 1).

        ``alpha < 1`` fades the new level in: h = α·block(fromRGB(x)) + (1 − α)·fromRGB_{level−1}(avgpool(x)).
        """
        level = self.num_levels - 1 if level is None else level
        h = self.from_rgb[level](x)  # (B, c_level, r, r)
        if level > 0:
            h = self.blocks[level](h)  # (B, c_{level-1}, r/2, r/2)
            if alpha < 1.0:
                h = alpha * h + (1 - alpha) * self.from_rgb[level - 1](F.avg_pool2d(x, 2))
            for k in range(level - 1, 0, -1):
                h = self.blocks[k](h)
        return self.head(h)  # (B, 1)
