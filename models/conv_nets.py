"""DCGAN-style convolutional stacks shared by the GAN and VAE families (plain ``nn.Module``s).

Both work for square images whose side halves down to a base of 3–7 px: 8, 16, 28, 32, 64, ...
"""

from __future__ import annotations

import torch
from torch import nn


def upsampling_plan(size: int) -> tuple[int, int]:
    """(base, n) with base * 2**n == size, halving while the side is even and above 4.

    Raises:
        ValueError: If ``size`` cannot be reached by at least one doubling from a base of 3..7 px.
    """
    base, n = size, 0
    while base % 2 == 0 and base > 4:
        base, n = base // 2, n + 1
    if n == 0 or not 3 <= base <= 7:
        raise ValueError(f"image side {size} is not supported: it must be base * 2**n with base in 3..7 and n >= 1")
    return base, n


class ConvDecoder(nn.Module):
    """Maps a latent vector to an image: linear → (C0, base, base) → n transposed-conv doublings.

    Args:
        latent_dim: Size Z of the input vector.
        image_shape: (C, H, W) of the output, H == W.
        width: Channels of the last hidden feature map (doubled at each coarser scale).
        out_activation: Applied to the output (e.g. ``nn.Tanh()``), or None for logits.
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 32,
                 out_activation: nn.Module | None = None) -> None:
        super().__init__()
        channels, side, _ = image_shape
        self.base, n = upsampling_plan(side)
        self.c0 = width * 2 ** (n - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.c0 * self.base * self.base, bias=False),
            nn.Unflatten(1, (self.c0, self.base, self.base)),
            nn.BatchNorm2d(self.c0),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c = self.c0
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, channels, 4, 2, 1))
        if out_activation is not None:
            layers.append(out_activation)
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z) -> (B, C, H, W)
        return self.body(self.project(z))


class ConvEncoder(nn.Module):
    """Maps an image to a vector: n strided-conv halvings → flatten → linear.

    Args:
        image_shape: (C, H, W) of the input, H == W.
        out_dim: Size of the output vector.
        width: Channels of the first feature map (doubled at each halving).
        batch_norm: Batch norm after every conv but the first (DCGAN discriminator style).
    """

    def __init__(self, image_shape: tuple[int, int, int], out_dim: int, width: int = 32, batch_norm: bool = True) -> None:
        super().__init__()
        channels, side, _ = image_shape
        base, n = upsampling_plan(side)
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for i in range(n):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=not (batch_norm and i > 0)))
            if batch_norm and i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, c * 2
        layers += [nn.Flatten(), nn.Linear(c_in * base * base, out_dim)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, out_dim)
        return self.body(x)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init (Radford et al., 2016): conv weights ~ N(0, 0.02), BN weights ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
