"""Variational autoencoder (Kingma & Welling, 2014) with a Bernoulli decoder on images in [0, 1].

:class:`GaussianVAE` holds what every Gaussian-posterior member of the family shares (networks, ELBO, IWAE
likelihood, sampling); the registered models (``vae`` here, ``beta-vae``, ``info-vae``) differ in the training loss.
"""

from __future__ import annotations

import torch

from models.base import AutoEncoder
from models.conv_nets import ConvDecoder, ConvEncoder
from models.registry import MODELS
from models.vae.likelihood import bernoulli_log_likelihood, gaussian_iwae_nll


class GaussianVAE(AutoEncoder):
    """Unregistered base: Gaussian posterior q(z|x), N(0, I) prior, Bernoulli likelihood p(x|z).

    Subclasses call ``save_hyperparameters()`` in their own ``__init__`` and implement :meth:`training_loss`.
    ``elbo`` and ``nll`` always measure the plain (β = 1) bound of the generative model, whatever the training
    loss. With intensities in [0, 1] that are not binary the Bernoulli log-likelihood is the usual surrogate, not
    a normalized density; the ELBO and NLL are reported as such.

    Args:
        image_shape: (C, H, W) of the data. latent_dim: Size of z. width: Channel width of encoder and decoder.
        lr: Adam learning rate.
    """

    family = "vae"
    #: Images per decoder call when ``nll`` decodes B·K posterior samples (bounds memory, not the result).
    nll_chunk_size: int = 4096

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, width: int, lr: float) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(self.image_shape, 2 * latent_dim, width, batch_norm=False)
        self.decoder = ConvDecoder(latent_dim, self.image_shape, width, out_activation=None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, C, H, W) -> 2 × (B, Z)
        """Posterior mean and log-variance."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def _loss_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image reconstruction NLL and analytic KL, each (B,) in nats, and the posterior sample z (B, Z)."""
        mu, logvar = self(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterization
        rec = -bernoulli_log_likelihood(self.decoder(z), x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl, z

    def training_loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar loss to minimize and the values to log (named without the stage prefix)."""
        raise NotImplementedError

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        loss, logs = self.training_loss(batch["image"], stage)
        self.log_dict(
            {f"{stage}_{k}": v for k, v in {"loss": loss, **logs}.items()},
            prog_bar=stage == "train",
            sync_dist=stage != "train",
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,) nats
        rec, kl, _ = self._loss_terms(x)
        return -(rec + kl)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """IWAE bound with K = ``num_samples`` reparameterized draws from q(z|x), (B,) nats; see AutoEncoder.nll.

        The noise is drawn as one (K, B, Z) tensor from ``generator`` (on the CPU, then moved), so the result is
        deterministic given the generator's state; the decoder sees the B·K samples in chunks of at most
        ``nll_chunk_size`` images.
        """
        mu, logvar = self(x)  # (B, Z) each
        return gaussian_iwae_nll(x, mu, logvar, self.decoder, num_samples, generator, self.nll_chunk_size)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self(x)
        return torch.sigmoid(self.decoder(mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.decoder(z))


@MODELS.register("vae")
class VAE(GaussianVAE):
    """Convolutional VAE: Gaussian posterior q(z|x), N(0, I) prior, Bernoulli likelihood p(x|z).

    The loss is the negative ELBO per image in nats: BCE summed over pixels + β·KL(q(z|x) || p(z)). With
    intensities in [0, 1] that are not binary the Bernoulli log-likelihood is the usual surrogate, not a
    normalized density; the ELBO is reported as such (always with β = 1).

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of z.
        width: Channel width of encoder and decoder.
        beta: Weight of the KL term (1 is the plain VAE).
        lr: Adam learning rate.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1.0,
        lr: float = 1e-3,
    ) -> None:
        super().__init__(image_shape, latent_dim, width, lr)
        self.save_hyperparameters()

    def training_loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rec, kl, _ = self._loss_terms(x)
        loss = (rec + self.hparams.beta * kl).mean()
        return loss, {"rec": rec.mean(), "kl": kl.mean()}

