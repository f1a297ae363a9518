"""Adapters that plug our VAE-family networks into pythae (Chadebec et al., 2022) models.

pythae takes custom ``encoder`` / ``decoder`` ``nn.Module``s (subclasses of its ``BaseEncoder`` / ``BaseDecoder``)
that return a ``ModelOutput``. The adapters below wrap *our* networks unchanged, so a pythae model built from
them computes its objective on exactly our posterior and decoder:

* Gaussian VAEs (``vae``, ``beta-vae``, ``info-vae``): the encoder adapter reproduces
  :meth:`models.vae.vae.GaussianVAE.forward` (chunk into mu / logvar, clamp logvar to [-30, 20]); the decoder
  adapter applies a sigmoid to our logits, because pythae's ``"bce"`` reconstruction loss is
  ``F.binary_cross_entropy`` on *probabilities* while ours is ``binary_cross_entropy_with_logits`` on logits
  (the same Bernoulli negative log-likelihood, summed over pixels).
* VQ-VAE: the encoder adapter returns our (B, D, h, w) encoder output as ``embedding``; the decoder adapter maps
  the (B, D, h, w) quantized grid through our decoder and a sigmoid (pythae's VQ-VAE has only an MSE likelihood;
  the tests compare our Bernoulli term through the decoder output it is computed from).

Imports pythae at module level: import this module only after ``pytest.importorskip("pythae")``.
"""

from __future__ import annotations

import copy

import torch
from pythae.models import VAE as PythaeVAE
from pythae.models import VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn

from models.vae.vae import GaussianVAE
from models.vae.vq_vae import VQVAE


class GaussianEncoderAdapter(BaseEncoder):
    """Our Gaussian-posterior encoder as a pythae encoder: x (B, C, H, W) -> embedding = mu, log_covariance = logvar.

    Args:
        net: Our ``ConvEncoder`` with ``2·latent_dim`` outputs (``GaussianVAE.encoder``).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.net(x).chunk(2, dim=1)  # (B, Z) each
        return ModelOutput(embedding=mu, log_covariance=logvar.clamp(-30.0, 20.0))  # as GaussianVAE.forward


class BernoulliDecoderAdapter(BaseDecoder):
    """Our logit decoder as a pythae decoder: z -> reconstruction = sigmoid(logits), the Bernoulli mean.

    Args:
        net: Our decoder returning pixel logits (``ConvDecoder`` or the VQ-VAE decoder stack).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))  # (B, C, H, W) probabilities


class VQEncoderAdapter(BaseEncoder):
    """Our VQ-VAE encoder as a pythae encoder: x -> embedding = z_e (B, D, h, w), channels first."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(embedding=self.net(x))  # (B, D, h, w)


def gaussian_adapters(model: GaussianVAE, share: bool = False) -> dict[str, nn.Module]:
    """``encoder`` / ``decoder`` kwargs for a pythae Gaussian VAE built on ``model``'s networks.

    Args:
        model: One of our Gaussian VAEs.
        share: Wrap ``model``'s own modules (True) or deep copies with equal weights (False, the default: the
            pythae model then trains and accumulates gradients independently of ``model``).
    """
    enc, dec = (model.encoder, model.decoder) if share else (copy.deepcopy(model.encoder), copy.deepcopy(model.decoder))
    return {"encoder": GaussianEncoderAdapter(enc), "decoder": BernoulliDecoderAdapter(dec)}


def vq_adapters(model: VQVAE, share: bool = False) -> dict[str, nn.Module]:
    """``encoder`` / ``decoder`` kwargs for a pythae VQ-VAE built on ``model``'s networks (see gaussian_adapters)."""
    enc, dec = (model.encoder, model.decoder) if share else (copy.deepcopy(model.encoder), copy.deepcopy(model.decoder))
    return {"encoder": VQEncoderAdapter(enc), "decoder": BernoulliDecoderAdapter(dec)}


def pythae_vae(model: GaussianVAE, share: bool = False) -> PythaeVAE:
    """pythae's vanilla ``VAE`` (Bernoulli "bce" likelihood) on ``model``'s encoder and decoder networks."""
    config = VAEConfig(input_dim=model.image_shape, latent_dim=model.latent_dim, reconstruction_loss="bce")
    return PythaeVAE(config, **gaussian_adapters(model, share))


# ------------------------------------------------------------------------ training-level peers (benchmarks/peers.py)
def pythae_beta_vae(model: GaussianVAE, share: bool = False) -> nn.Module:
    """pythae's ``BetaVAE`` ("bce", ``beta`` = our ``hparams.beta``) on ``model``'s networks."""
    from pythae.models import BetaVAE, BetaVAEConfig

    config = BetaVAEConfig(input_dim=model.image_shape, latent_dim=model.latent_dim, reconstruction_loss="bce",
                           beta=model.hparams.beta)
    return BetaVAE(config, **gaussian_adapters(model, share))


def pythae_info_vae(model: GaussianVAE, share: bool = False) -> nn.Module:
    """pythae's ``INFOVAE_MMD`` with our kernel, α and λ (``lbd``), bandwidth 1 and one scale (C = 2·latent_dim)."""
    from pythae.models import INFOVAE_MMD, INFOVAE_MMD_Config

    h = model.hparams
    config = INFOVAE_MMD_Config(input_dim=model.image_shape, latent_dim=model.latent_dim, reconstruction_loss="bce",
                                kernel_choice=h.kernel, alpha=h.alpha, lbd=h.lambda_mmd, kernel_bandwidth=1.0,
                                scales=None)
    return INFOVAE_MMD(config, **gaussian_adapters(model, share))


def _bernoulli_vq_vae_class() -> type:
    """pythae's ``VQVAE`` with its loss rewritten in our units (pythae's VQ-VAE has only an MSE likelihood).

    Reconstruction: ``F.binary_cross_entropy`` on the decoder adapter's probabilities, summed over pixels (our
    Bernoulli NLL); VQ loss: pythae's quantizer loss (element means) times D·h·w (ours sums over the code grid).
    Everything else — pythae's quantizer, its EMA update, its straight-through estimator — is pythae's.
    """
    import torch.nn.functional as F
    from pythae.models import VQVAE as PythaeVQVAE

    class BernoulliPythaeVQVAE(PythaeVQVAE):
        def loss_function(self, recon_x, x, quantizer_output):  # noqa: ANN001, ANN201 (pythae's signature)
            rec = F.binary_cross_entropy(recon_x, x, reduction="none").flatten(1).sum(1)  # (B,) nats
            vq = quantizer_output.loss * quantizer_output.quantized_vector[0].numel()  # × D·h·w
            return (rec + vq).mean(dim=0), rec.mean(dim=0), vq

    return BernoulliPythaeVQVAE


def pythae_vq_vae(model: VQVAE, share: bool = False) -> nn.Module:
    """pythae's ``VQVAE`` (Bernoulli loss, see _bernoulli_vq_vae_class) on ``model``'s networks and codebook.

    Matched to our settings: K = ``num_codes``, D = ``latent_dim``, commitment β, EMA iff ``ema_decay > 0`` (with
    that decay), codebook loss factor 1. Our codebook (and EMA statistics) are copied into pythae's quantizer.
    """
    from pythae.models import VQVAEConfig

    h = model.hparams
    config = VQVAEConfig(input_dim=model.image_shape, latent_dim=h.latent_dim, num_embeddings=h.num_codes,
                         commitment_loss_factor=h.commitment, quantization_loss_factor=1.0,
                         use_ema=h.ema_decay > 0, decay=h.ema_decay if h.ema_decay > 0 else 0.99)
    theirs = _bernoulli_vq_vae_class()(config, **vq_adapters(model, share))
    q = theirs.quantizer
    with torch.no_grad():
        if h.ema_decay > 0:
            q.embeddings.copy_(model.quantizer.codebook)
            q.ema_embed.copy_(model.quantizer.ema_sum)
            q.cluster_size = model.quantizer.ema_count.clone()
        else:
            q.embeddings.weight.copy_(model.quantizer.codebook)
    return theirs
