"""LSGAN (Mao et al., 2017): least-squares GAN losses on the DCGAN architecture."""

from __future__ import annotations

import torch
from torch import nn

from models.conv_nets import ConvDecoder, ConvEncoder, dcgan_init
from models.gan.adversarial import AdversarialGAN
from models.registry import MODELS


@MODELS.register("lsgan")
class LSGAN(AdversarialGAN):
    """Least-squares GAN with the 0-1 coding a = 0 (fake), b = 1 (real), c = 1 (what G wants D to say).

    Critic: ½·E[(D(x) − b)²] + ½·E[(D(G(z)) − a)²]; generator: ½·E[(D(G(z)) − c)²]. The networks are DCGAN's
    (:class:`~models.conv_nets.ConvDecoder` with tanh output, :class:`~models.conv_nets.ConvEncoder` with batch
    norm and a linear, unbounded score); one critic step per generator step.

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of the noise vector z ~ N(0, I).
        width: Channel width of generator and discriminator.
        lr: Adam learning rate of both networks.
        beta1: Adam β1.
        ema_decay: Decay of an EMA generator used for sampling; 0 disables it.
    """

    #: The a-b-c coding of the least-squares losses.
    a: float = 0.0
    b: float = 1.0
    c: float = 1.0

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

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:  # (B, 1) scores each
        return 0.5 * (d_real - self.b).pow(2).mean() + 0.5 * (d_fake - self.a).pow(2).mean()

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (d_fake - self.c).pow(2).mean()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]
