"""β-VAE (Higgins et al., 2017): the VAE loss with the KL term weighted by β > 1 (default 4)."""

from __future__ import annotations

from models.registry import MODELS
from models.vae.vae import VAE


@MODELS.register("beta-vae")
class BetaVAE(VAE):
    """β-VAE: loss = BCE + β·KL(q(z|x) || N(0, I)) per image, β = 4 by default (Higgins et al. used β ≈ 4 on
    dSprites-like data; larger β trades reconstruction for a more factorized, prior-like posterior).

    ``elbo`` and ``nll`` measure the plain β = 1 bound of the same generative model, so the β-VAE is scored on
    the same footing as the VAE (it optimizes a looser objective, so expect a lower ELBO).

    Args:
        image_shape: (C, H, W) of the data. latent_dim: Size of z. width: Channel width.
        beta: Weight of the KL term. lr: Adam learning rate.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 4.0,
        lr: float = 1e-3,
    ) -> None:
        super().__init__(image_shape, latent_dim, width, beta, lr)
