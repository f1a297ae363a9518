"""LSGAN (Mao et al., 2017): least-squares GAN losses on the DCGAN architecture."""

from __future__ import annotations

import torch

from models.gan.dcgan import DCGAN
from models.registry import MODELS


@MODELS.register("lsgan")
class LSGAN(DCGAN):
    """Least-squares GAN with the 0-1 coding a = 0 (fake), b = 1 (real), c = 1 (what G wants D to say).

    Critic: ½·E[(D(x) − b)²] + ½·E[(D(G(z)) − a)²]; generator: ½·E[(D(G(z)) − c)²]. Networks, hyperparameters
    and optimizers are DCGAN's (the discriminator's last linear layer gives an unbounded score); only the losses
    differ. One critic step per generator step.
    """

    #: The a-b-c coding of the least-squares losses.
    a: float = 0.0
    b: float = 1.0
    c: float = 1.0

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:  # (B, 1) scores each
        return 0.5 * (d_real - self.b).pow(2).mean() + 0.5 * (d_fake - self.a).pow(2).mean()

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (d_fake - self.c).pow(2).mean()
