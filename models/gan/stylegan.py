"""StyleGAN (Karras et al., 2019) at small scale: a style-based generator trained without progressive growing.

Generator: mapping network z → w (pixel norm, ``mapping_layers`` equalized-LR dense layers with the paper's
0.01 learning-rate multiplier), a learned constant 4×4 input, and per resolution two style layers, each
``[2× bilinear upsample] → 3×3 conv → + per-channel-scaled noise → bias, LeakyReLU(0.2) → AdaIN(w)``. Style
modulation is the paper's AdaIN (instance normalization, then a per-channel scale and shift from a learned affine
map of w; the scale's bias starts at 1), not StyleGAN2's modulated convolution. Every layer draws a fresh noise
image (B, 1, H, W) whose per-channel scale is learned and starts at 0; :meth:`StyleGAN.sample` draws that noise
from the ``generator`` it is given, after z, so sampling is reproducible. Style mixing and the truncation trick
are not used (samples are at ψ = 1).

Critic: the ProGAN critic (equalized LR, minibatch stddev) at the full resolution. Loss: the non-saturating
logistic loss with the R1 penalty γ/2·E[||∇D(x_real)||²] on every critic step (StyleGAN's FFHQ setting uses
γ = 10 at 1024 px; the default here is smaller for 16–64 px images and small batches, and not tuned).

Data sides that are not powers of two (28) are handled as in ProGAN: the generator works at the next power of
two, its output is resized to the data side for :meth:`~StyleGAN.sample`, and the critic compares real images
resized up to the work side with generated ones resized down to the data side and back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.adversarial import AdversarialGAN, next_power_of_two, r1_penalty, resize_images
from models.gan.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    PixelNorm,
    ProgressiveDiscriminator,
    level_channels,
    num_levels_for,
)
from models.registry import MODELS


class MappingNetwork(nn.Module):
    """z → w: pixel norm, then ``num_layers`` × (equalized-LR dense, LeakyReLU 0.2) of width ``latent_dim``."""

    def __init__(self, latent_dim: int, num_layers: int, lr_mul: float = 0.01) -> None:
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(num_layers):
            layers += [EqualizedLinear(latent_dim, latent_dim, lr_mul=lr_mul), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z) -> (B, W), W == Z
        return self.body(z)


class NoiseInput(nn.Module):
    """Adds a single-channel Gaussian noise image scaled by a learned per-channel strength (initially 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:  # (B, C, H, W)
        b, _, h, w = x.shape
        if rng is not None:  # sampling: reproducible noise from the caller's CPU generator
            noise = torch.randn(b, 1, h, w, generator=rng).to(device=x.device, dtype=x.dtype)
        else:
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
        return x + self.strength.view(1, -1, 1, 1) * noise


class AdaIN(nn.Module):
    """Adaptive instance normalization: ``instance_norm(x) · (y_s) + y_b`` with (y_s, y_b) = A(w)."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, 2 * channels, gain=1.0)
        with torch.no_grad():
            self.affine.bias[:channels].fill_(1.0)  # style scales start at 1

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (B, W) -> (B, C, H, W)
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + 1e-8)
        scale, shift = self.affine(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1, 1) each
        return x * scale + shift


class StyleLayer(nn.Module):
    """``[2× bilinear upsample] → 3×3 conv → noise → bias, LeakyReLU → AdaIN(w)``; no conv for the input layer.

    Args:
        in_channels: Input channels. out_channels: Output channels. w_dim: Size of w.
        upsample: Double the resolution first. conv: Whether there is a conv (False: the constant input's layer).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, upsample: bool = False,
                 conv: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = EqualizedConv2d(in_channels, out_channels, 3, bias=False) if conv else None
        self.noise = NoiseInput(out_channels)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.adain = AdaIN(out_channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # (B, Cin, 2H, 2W)
        if self.conv is not None:
            x = self.conv(x)  # (B, Cout, H, W)
        x = F.leaky_relu(self.noise(x, rng) + self.bias.view(1, -1, 1, 1), 0.2)
        return self.adain(x, w)


class StyleGenerator(nn.Module):
    """Mapping network + synthesis network from a learned constant 4×4 input to (B, C, S, S), S = 4·2^(L−1).

    Args:
        latent_dim: Size of z and w. out_channels: Image channels.
        channels: Feature channels per resolution 4, 8, ..., S (coarsest first). mapping_layers: Depth of mapping.
    """

    def __init__(self, latent_dim: int, out_channels: int, channels: list[int], mapping_layers: int) -> None:
        super().__init__()
        self.mapping = MappingNetwork(latent_dim, mapping_layers)
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        layers = [StyleLayer(channels[0], channels[0], latent_dim, conv=False),
                  StyleLayer(channels[0], channels[0], latent_dim)]
        for k in range(1, len(channels)):
            layers += [StyleLayer(channels[k - 1], channels[k], latent_dim, upsample=True),
                       StyleLayer(channels[k], channels[k], latent_dim)]
        self.layers = nn.ModuleList(layers)
        self.to_rgb = EqualizedConv2d(channels[-1], out_channels, 1, gain=1.0)

    def forward(self, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """(B, Z) -> (B, C, S, S); noise images come from ``rng`` (CPU) when given, else the global RNG."""
        w = self.mapping(z)  # (B, W)
        x = self.const.expand(z.shape[0], -1, -1, -1)  # (B, c0, 4, 4)
        for layer in self.layers:
            x = layer(x, w, rng)
        return self.to_rgb(x)


@MODELS.register("stylegan")
class StyleGAN(AdversarialGAN):
    """Style-based generator (AdaIN, noise inputs, constant input) against a ProGAN critic, non-saturating + R1.

    Args:
        image_shape: (C, H, W) of the data, H == W >= 8 (from the datamodule).
        latent_dim: Size of z and of the intermediate latent w.
        width: Channels at the finest resolution, doubled at each coarser one up to ``max_channels``.
        max_channels: Channel cap of the coarse resolutions.
        mapping_layers: Dense layers of the mapping network (8 in the paper).
        lr: Adam learning rate of both networks (the mapping network's is 100× lower through equalized LR).
        beta1: Adam β1 (0). beta2: Adam β2 (0.99).
        r1_gamma: R1 weight γ; the critic adds γ/2·E[||∇D(x_real)||²].
        ema_decay: Decay of the EMA generator used for sampling; 0 disables it.
    """

    real_requires_grad = True

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 64,
        width: int = 16,
        max_channels: int = 64,
        mapping_layers: int = 4,
        lr: float = 1e-3,
        beta1: float = 0.0,
        beta2: float = 0.99,
        r1_gamma: float = 0.1,
        ema_decay: float = 0.99,
    ) -> None:
        c, h, w = (int(s) for s in image_shape)
        if h != w or h < 8:
            raise ValueError(f"stylegan needs square images of side >= 8, got {h}x{w}")
        work_side = next_power_of_two(h)
        channels = level_channels(num_levels_for(work_side), width, max_channels)
        generator = StyleGenerator(latent_dim, c, channels, mapping_layers)
        critic = ProgressiveDiscriminator(c, channels)
        super().__init__(image_shape, generator, critic, latent_dim, n_critic=1, ema_decay=ema_decay)
        self.save_hyperparameters()
        self.work_side = work_side

    def generate(self, net: nn.Module, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        x = net(z, rng)  # (B, C, S, S)
        if self.work_side != self.image_shape[1]:
            x = resize_images(resize_images(x, self.image_shape[1]), self.work_side)  # the reals' band limit
        return x

    def render(self, net: nn.Module, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        return resize_images(net(z, rng), self.image_shape[1])  # (B, C, H, W)

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        return resize_images(real, self.work_side)  # (B, C, S, S)

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:  # (B, 1) logits each
        return F.softplus(d_fake).mean() + F.softplus(-d_real).mean()

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:  # non-saturating: −log sigmoid(D(G(z)))
        return F.softplus(-d_fake).mean()

    def critic_regularizers(self, real: torch.Tensor, fake: torch.Tensor,
                            d_real: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.hparams.r1_gamma == 0:
            return {}
        return {"r1": 0.5 * self.hparams.r1_gamma * r1_penalty(d_real, real)}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, self.hparams.beta2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas, eps=1e-8)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas, eps=1e-8)
        return [opt_g, opt_d]
