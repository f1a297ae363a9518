"""Likelihood helpers shared by the VAE family: log densities, the IWAE bound, MMD, nats → bits/dim.

All log densities are summed over every non-batch dimension and returned in nats.

The Bernoulli "likelihood" of images whose intensities are in [0, 1] but not binary is the usual surrogate
``Σ x·log p + (1-x)·log(1-p)``: it is not a normalized density on 8-bit (or continuous) data, so bits/dim computed
from it are comparable between Bernoulli-decoder models only, not with published discretized-likelihood numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) under independent Bernoulli pixels, (B, ...) -> (B,) nats (the [0, 1] surrogate)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension (nats)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension (nats)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def iwae_nll(log_weights: torch.Tensor) -> torch.Tensor:
    """Importance-weighted NLL bound (Burda et al., 2016) from log weights (K, B): -log mean_k w_k, (B,) nats.

    ``log w_k = log p(x, z_k) - log q(z_k | x)`` with ``z_k ~ q(z | x)``; the result is an upper bound on
    -log p(x) whose expectation decreases (tightens) with K; K = 1 gives the negative (single-sample) ELBO.
    """
    k = log_weights.shape[0]
    return -(torch.logsumexp(log_weights.double(), dim=0) - math.log(k)).to(log_weights.dtype)


def gaussian_iwae_nll(
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    decoder: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int,
    generator: torch.Generator | None = None,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """IWAE bound (nats per image, (B,)) of a Gaussian-posterior, Bernoulli-decoder model.

    The noise is drawn as one (K, B, Z) tensor from ``generator`` (on the CPU, then moved), so the result is
    deterministic given the generator's state; the decoder sees the B·K samples in chunks of at most
    ``chunk_size`` images.

    Args:
        x: (B, C, H, W) images in [0, 1]. mu, logvar: (B, Z) posterior q(z | x).
        decoder: z (N, Z) -> pixel logits (N, C, H, W).
        num_samples: K, posterior samples per image.
        generator: Source of the posterior noise.
        chunk_size: Largest number of images per decoder call.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    b, z_dim = mu.shape
    eps = torch.randn(num_samples, b, z_dim, generator=generator).to(device=mu.device, dtype=mu.dtype)
    z = mu + eps * (0.5 * logvar).exp()  # (K, B, Z)
    log_prior_minus_q = log_standard_normal(z) - log_normal_diag(z, mu, logvar)  # (K, B)
    log_px = torch.empty(num_samples, b, dtype=mu.dtype, device=mu.device)
    per_chunk = max(1, chunk_size // max(b, 1))  # posterior samples per decoder call
    for k0 in range(0, num_samples, per_chunk):
        zk = z[k0 : k0 + per_chunk]  # (k, B, Z)
        k = zk.shape[0]
        logits = decoder(zk.reshape(k * b, z_dim))  # (k·B, C, H, W)
        log_px[k0 : k0 + k] = bernoulli_log_likelihood(logits, x.repeat(k, 1, 1, 1)).view(k, b)
    return iwae_nll(log_px + log_prior_minus_q)


def nats_to_bits_per_dim(nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Converts nats per image to bits per dimension: ``nats / (num_dims · ln 2)``, num_dims = C·H·W."""
    return nats / (num_dims * math.log(2))


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "imq", scale: float | None = None) -> torch.Tensor:
    """Unbiased MMD² estimate between samples ``x`` (n, D) and ``y`` (m, D) (Gretton et al., 2012).

    Kernels, with ``C = scale`` (default ``2·D``, the expected squared distance between two N(0, I) draws, as in
    Tolstikhin et al.'s WAE):

    * ``"imq"``: inverse multiquadratic ``C / (C + ‖a − b‖²)`` (heavy tails: keeps a gradient for far outliers);
    * ``"rbf"``: Gaussian ``exp(−‖a − b‖² / C)``.

    The unbiased estimate drops the diagonal self-similarities, so it is ≈ 0 (and may be slightly negative) for
    two samples of the same distribution, and grows as the distributions move apart.
    """
    n, d = x.shape
    m = y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {n} and {m}")
    c = float(scale) if scale is not None else 2.0 * d

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Squared distances without cdist (whose gradient is undefined at zero distance, on the diagonal).
        d2 = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0)
        if kernel == "imq":
            return c / (c + d2)
        if kernel == "rbf":
            return torch.exp(-d2 / c)
        raise ValueError(f"unknown MMD kernel {kernel!r}; use 'imq' or 'rbf'")

    k_xx, k_yy, k_xy = k(x, x), k(y, y), k(x, y)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return term_xx + term_yy - 2 * k_xy.mean()
