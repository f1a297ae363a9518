"""Variational autoencoder (Kingma & Welling, 2014) with a Bernoulli decoder on images in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.base import AutoEncoder
from models.conv_nets import ConvDecoder, ConvEncoder
from models.registry import MODELS


@MODELS.register("vae")
class VAE(AutoEncoder):
    """Convolutional VAE: Gaussian posterior q(z|x), N(0, I) prior, Bernoulli likelihood p(x|z).

    The loss is the negative ELBO per image in nats: BCE summed over pixels + β·KL(q(z|x) || p(z)). With
    intensities in [0, 1] that are not binary the Bernoulli log-likelihood is the usual surrogate, not a
    normalized density; the ELBO is reported as such.

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of z.
        width: Channel width of encoder and decoder.
        beta: Weight of the KL term (1 is the plain VAE).
        lr: Adam learning rate.
    """

    family = "vae"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1.0,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_shape = tuple(image_shape)
        self.encoder = ConvEncoder(self.image_shape, 2 * latent_dim, width, batch_norm=False)
        self.decoder = ConvDecoder(latent_dim, self.image_shape, width, out_activation=None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, C, H, W) -> 2 × (B, Z)
        """Posterior mean and log-variance."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def _loss_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction NLL and KL, each (B,) in nats."""
        mu, logvar = self(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterization
        logits = self.decoder(z)  # (B, C, H, W)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        rec, kl = self._loss_terms(batch["image"])
        loss = (rec + self.hparams.beta * kl).mean()
        self.log_dict(
            {f"{stage}_loss": loss, f"{stage}_rec": rec.mean(), f"{stage}_kl": kl.mean()},
            prog_bar=stage == "train",
            sync_dist=stage != "train",
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,) nats
        rec, kl = self._loss_terms(x)
        return -(rec + kl)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self(x)
        return torch.sigmoid(self.decoder(mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.hparams.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.decoder(z))
