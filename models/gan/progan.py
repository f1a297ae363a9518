"""ProGAN (Karras et al., 2018): progressive growing of a GAN with fade-in, at small scale.

The generator and critic hold every resolution 4, 8, ..., ``work_side`` from the start; a schedule over the
training-batch counter decides which resolution is trained and how far the newest one is faded in. Data whose
side is not 4·2^k (Fashion-MNIST's 28) is handled at the next power of two ``work_side`` (32): real images are
resized up to it (bilinear), the generator's full-resolution output is resized down to the data side and back up
before the critic sees it (so real and generated images go through the same band limit), and :meth:`sample`
returns the generator's output resized to the data side (antialiased bilinear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.adversarial import AdversarialGAN, gradient_penalty, next_power_of_two, resize_images
from models.gan.layers import (
    RELU_GAIN,
    EqualizedConv2d,
    EqualizedLinear,
    PixelNorm,
    ProgressiveDiscriminator,
    level_channels,
    num_levels_for,
)
from models.gan.wgan import _WassersteinLosses
from models.registry import MODELS


def progressive_schedule(step: int, steps_per_phase: int, num_levels: int) -> tuple[int, float]:
    """(level, alpha) after ``step`` training batches; the generator's output side is 4·2^level.

    Phases of ``steps_per_phase`` batches each: level 0 stable, then for every new level k = 1..num_levels−1 a
    fade-in phase (alpha rising linearly from 0 towards 1) followed by a stable phase (alpha = 1). The last
    stable phase lasts for the rest of training, so any budget works: with fewer than
    ``2·(num_levels − 1)·steps_per_phase`` batches training simply ends at a coarser level.

    Args:
        step: Training batches taken so far (>= 0).
        steps_per_phase: Batches per phase (>= 1).
        num_levels: Number of resolutions (levels 0..num_levels−1).
    """
    phase = step // steps_per_phase
    if phase >= 2 * (num_levels - 1):
        return num_levels - 1, 1.0
    level = (phase + 1) // 2
    if phase % 2 == 1:  # fading level `level` in
        return level, (step - phase * steps_per_phase) / steps_per_phase
    return level, 1.0


def fade_in(new: torch.Tensor, old: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha · new + (1 − alpha) · upsample(old)``; new (B, C, 2r, 2r), old (B, C, r, r) (nearest upsampling)."""
    return alpha * new + (1 - alpha) * F.interpolate(old, scale_factor=2, mode="nearest")


class ProgressiveGenerator(nn.Module):
    """ProGAN generator: z → 4×4 block → [2× nearest upsample, 3×3 conv, 3×3 conv] per level → toRGB (1×1).

    Equalized learning rate everywhere, LeakyReLU(0.2) and pixel norm after every conv, linear toRGB outputs.

    Args:
        latent_dim: Size of z. out_channels: Image channels. channels: Feature channels per level (coarsest first).
    """

    def __init__(self, latent_dim: int, out_channels: int, channels: list[int]) -> None:
        super().__init__()
        self.num_levels = len(channels)
        self.c0 = channels[0]
        self.pixel_norm = PixelNorm()
        self.input = EqualizedLinear(latent_dim, self.c0 * 16, gain=RELU_GAIN / 4)  # the paper's 4×4 dense
        self.input_conv = nn.Sequential(EqualizedConv2d(self.c0, self.c0, 3), nn.LeakyReLU(0.2), PixelNorm())
        self.blocks = nn.ModuleList([nn.Identity()])  # level 0 is the input block
        for k in range(1, self.num_levels):
            self.blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                EqualizedConv2d(channels[k - 1], channels[k], 3), nn.LeakyReLU(0.2), PixelNorm(),
                EqualizedConv2d(channels[k], channels[k], 3), nn.LeakyReLU(0.2), PixelNorm(),
            ))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, out_channels, 1, gain=1.0) for c in channels)

    def features(self, z: torch.Tensor, level: int) -> torch.Tensor:
        """Feature map of ``level``, (B, Z) -> (B, c_level, 4·2^level, 4·2^level)."""
        h = F.leaky_relu(self.input(self.pixel_norm(z)), 0.2).view(-1, self.c0, 4, 4)  # (B, c0, 4, 4)
        h = self.input_conv(self.pixel_norm(h))
        for k in range(1, level + 1):
            h = self.blocks[k](h)  # (B, c_k, 4·2^k, 4·2^k)
        return h

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Images at level ``level`` (default: the finest), (B, Z) -> (B, C, 4·2^level, 4·2^level).

        With ``alpha < 1`` the newest level is faded in: ``fade_in(toRGB_level(h), toRGB_{level−1}(h'), alpha)``.
        """
        level = self.num_levels - 1 if level is None else level
        if level == 0:
            return self.to_rgb[0](self.features(z, 0))
        h_prev = self.features(z, level - 1)  # (B, c_{level-1}, r/2, r/2)
        new = self.to_rgb[level](self.blocks[level](h_prev))  # (B, C, r, r)
        if alpha >= 1.0:
            return new
        return fade_in(new, self.to_rgb[level - 1](h_prev), alpha)


@MODELS.register("progan")
class ProGAN(_WassersteinLosses, AdversarialGAN):
    """Progressive GAN with the WGAN-GP loss plus the drift term ε·E[D(x)²] (Karras et al., 2018, small scale).

    Growth runs from 4×4 to ``work_side`` (the data side, or the next power of two; see the module docstring) on
    the schedule of :func:`progressive_schedule` over training batches. Real images are faded like the
    generator's output: α·downsample_r(x) + (1 − α)·upsample(downsample_{r/2}(x)). One critic step per
    generator step, Adam (β = (0, 0.99)), an EMA generator for sampling.

    Args:
        image_shape: (C, H, W) of the data, H == W >= 8 (from the datamodule).
        latent_dim: Size of z ~ N(0, I) (pixel-normalized on input).
        width: Channels at the finest level, doubled at each coarser level up to ``max_channels``.
        max_channels: Channel cap of the coarse levels.
        steps_per_phase: Training batches per stable or fade-in phase.
        lr: Adam learning rate of both networks (1e-3 as in the paper).
        beta1: Adam β1 (0). beta2: Adam β2 (0.99).
        gp_weight: Gradient-penalty weight λ (10).
        drift_weight: Weight ε_drift of E[D(x_real)²] (1e-3).
        ema_decay: Decay of the EMA generator used for sampling (the paper's 0.999 suits long runs; 0.99 suits
            the few thousand steps of a CPU budget); 0 disables it.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 64,
        width: int = 16,
        max_channels: int = 64,
        steps_per_phase: int = 250,
        lr: float = 1e-3,
        beta1: float = 0.0,
        beta2: float = 0.99,
        gp_weight: float = 10.0,
        drift_weight: float = 1e-3,
        ema_decay: float = 0.99,
    ) -> None:
        c, h, w = (int(s) for s in image_shape)
        if h != w or h < 8:
            raise ValueError(f"progan needs square images of side >= 8, got {h}x{w}")
        if steps_per_phase < 1:
            raise ValueError(f"steps_per_phase must be >= 1, got {steps_per_phase}")
        work_side = next_power_of_two(h)
        channels = level_channels(num_levels_for(work_side), width, max_channels)
        generator = ProgressiveGenerator(latent_dim, c, channels)
        critic = ProgressiveDiscriminator(c, channels)
        super().__init__(image_shape, generator, critic, latent_dim, n_critic=1, ema_decay=ema_decay)
        self.save_hyperparameters()
        self.work_side = work_side
        self.num_levels = len(channels)

    # ---------------------------------------------------------------------------------------------- schedule
    def phase(self, step: int | None = None) -> tuple[int, float]:
        """(level, alpha) after ``step`` training batches (default: the batches trained so far)."""
        step = int(self.train_batches) if step is None else step
        return progressive_schedule(step, self.hparams.steps_per_phase, self.num_levels)

    def resolution_and_alpha(self, step: int | None = None) -> tuple[int, float]:
        """(side in px of the generator's current output, fade-in alpha) after ``step`` training batches."""
        level, alpha = self.phase(step)
        return 4 * 2**level, alpha

    # ---------------------------------------------------------------------------------------------- hooks
    def generate(self, net: nn.Module, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        level, alpha = self.phase()
        x = net(z, level, alpha)  # (B, C, r, r)
        if level == self.num_levels - 1 and self.work_side != self.image_shape[1]:
            x = resize_images(resize_images(x, self.image_shape[1]), self.work_side)  # the reals' band limit
        return x

    def render(self, net: nn.Module, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        level, alpha = self.phase()
        x = net(z, level, alpha)  # (B, C, r, r)
        if x.shape[-1] < self.work_side:  # coarse phases: blocky upsampling, as the fade-in sees them
            x = F.interpolate(x, size=(self.work_side, self.work_side), mode="nearest")
        return resize_images(x, self.image_shape[1])  # (B, C, H, W)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        level, alpha = self.phase()
        return self.discriminator(x, level, alpha)

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        level, alpha = self.phase()
        x = resize_images(real, self.work_side)  # (B, C, S, S)
        r = 4 * 2**level
        current = F.avg_pool2d(x, self.work_side // r) if r < self.work_side else x  # (B, C, r, r)
        if level > 0 and alpha < 1.0:
            current = fade_in(current, F.avg_pool2d(x, 2 * self.work_side // r), alpha)
        return current

    def critic_regularizers(self, real: torch.Tensor, fake: torch.Tensor,
                            d_real: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "gp": self.hparams.gp_weight * gradient_penalty(self.critic, real, fake),
            "drift": self.hparams.drift_weight * d_real.pow(2).mean(),
        }

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, self.hparams.beta2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas, eps=1e-8)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas, eps=1e-8)
        return [opt_g, opt_d]
