"""DCGAN (Radford et al., 2016) with the non-saturating GAN loss (Goodfellow et al., 2014)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.conv_nets import ConvDecoder, ConvEncoder, dcgan_init
from models.gan.adversarial import AdversarialGAN
from models.registry import MODELS


@MODELS.register("dcgan")
class DCGAN(AdversarialGAN):
    """Unconditional DCGAN trained with Lightning manual optimization (one D step, one G step per batch).

    Generator: :class:`~models.conv_nets.ConvDecoder` (batch norm, ReLU, tanh output); discriminator:
    :class:`~models.conv_nets.ConvEncoder` (batch norm, LeakyReLU 0.2) giving one logit; DCGAN init.

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of the noise vector z ~ N(0, I).
        width: Channel width of generator and discriminator.
        lr: Adam learning rate of both networks.
        beta1: Adam β1 (0.5 as in the paper).
        ema_decay: Decay of an EMA generator used for sampling; 0 (default) disables it.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 64,
        width: int = 32,
        lr: float = 2e-4,
        beta1: float = 0.5,
        ema_decay: float = 0.0,
    ) -> None:
        generator = ConvDecoder(latent_dim, tuple(image_shape), width, out_activation=nn.Tanh())
        discriminator = ConvEncoder(tuple(image_shape), 1, width, batch_norm=True)
        generator.apply(dcgan_init)
        discriminator.apply(dcgan_init)
        super().__init__(image_shape, generator, discriminator, latent_dim, n_critic=1, ema_decay=ema_decay)
        self.save_hyperparameters()

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:  # (B, 1) logits each
        return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:  # non-saturating: -log D(G(z))
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]
