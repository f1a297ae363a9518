"""Wasserstein GANs: weight clipping (Arjovsky et al., 2017) and gradient penalty (Gulrajani et al., 2017)."""

from __future__ import annotations

import torch
from torch import nn

from models.conv_nets import ConvDecoder, ConvEncoder, dcgan_init
from models.gan.adversarial import AdversarialGAN, gradient_penalty
from models.registry import MODELS


class _WassersteinLosses:
    """Critic: E[D(G(z))] − E[D(x)] (minus the Wasserstein-1 estimate); generator: −E[D(G(z))]."""

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:  # (B, 1) scores each
        return d_fake.mean() - d_real.mean()

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return -d_fake.mean()


@MODELS.register("wgan")
class WGAN(_WassersteinLosses, AdversarialGAN):
    """WGAN with weight clipping: every critic parameter is clamped to [−c, c] after each critic step.

    DCGAN networks (the critic keeps batch norm, as in the paper's DCGAN experiments, and its BN parameters are
    clipped too, like the reference code), RMSprop, ``n_critic`` critic steps per generator step. The paper's
    extra critic iterations (100 for the first 25 generator steps and every 500th) are not used.

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of the noise vector z ~ N(0, I).
        width: Channel width of generator and critic.
        lr: RMSprop learning rate of both networks (5e-5 in the paper).
        clip_value: Clipping bound c (0.01 in the paper).
        n_critic: Critic steps per generator step (5 in the paper).
        ema_decay: Decay of an EMA generator used for sampling; 0 disables it.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 64,
        width: int = 32,
        lr: float = 5e-5,
        clip_value: float = 0.01,
        n_critic: int = 5,
        ema_decay: float = 0.0,
    ) -> None:
        generator = ConvDecoder(latent_dim, tuple(image_shape), width, out_activation=nn.Tanh())
        critic = ConvEncoder(tuple(image_shape), 1, width, batch_norm=True)
        generator.apply(dcgan_init)
        critic.apply(dcgan_init)
        super().__init__(image_shape, generator, critic, latent_dim, n_critic=n_critic, ema_decay=ema_decay)
        self.save_hyperparameters()

    @torch.no_grad()
    def after_critic_step(self) -> None:
        """Clamps every critic parameter to [−clip_value, clip_value] (the Lipschitz constraint of WGAN)."""
        c = self.hparams.clip_value
        for p in self.discriminator.parameters():
            p.clamp_(-c, c)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = torch.optim.RMSprop(self.generator.parameters(), lr=self.hparams.lr)
        opt_d = torch.optim.RMSprop(self.discriminator.parameters(), lr=self.hparams.lr)
        return [opt_g, opt_d]


@MODELS.register("wgan-gp")
class WGANGP(_WassersteinLosses, AdversarialGAN):
    """WGAN-GP: the Wasserstein losses plus λ·E[(||∇D(x̂)||₂ − 1)²] at random interpolates x̂ of real and fake.

    The critic has no batch norm (the penalty is per image, which batch norm would break); the generator is
    DCGAN's. Adam with β = (0, 0.9) and ``n_critic`` critic steps per generator step, as in the paper.

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of the noise vector z ~ N(0, I).
        width: Channel width of generator and critic.
        lr: Adam learning rate of both networks (1e-4 in the paper).
        beta1: Adam β1 (0). beta2: Adam β2 (0.9).
        gp_weight: Penalty weight λ (10).
        n_critic: Critic steps per generator step (5).
        ema_decay: Decay of an EMA generator used for sampling; 0 disables it.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 64,
        width: int = 32,
        lr: float = 1e-4,
        beta1: float = 0.0,
        beta2: float = 0.9,
        gp_weight: float = 10.0,
        n_critic: int = 5,
        ema_decay: float = 0.0,
    ) -> None:
        generator = ConvDecoder(latent_dim, tuple(image_shape), width, out_activation=nn.Tanh())
        critic = ConvEncoder(tuple(image_shape), 1, width, batch_norm=False)
        generator.apply(dcgan_init)
        critic.apply(dcgan_init)
        super().__init__(image_shape, generator, critic, latent_dim, n_critic=n_critic, ema_decay=ema_decay)
        self.save_hyperparameters()

    def critic_regularizers(self, real: torch.Tensor, fake: torch.Tensor,
                            d_real: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gp": self.hparams.gp_weight * gradient_penalty(self.critic, real, fake)}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, self.hparams.beta2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]
