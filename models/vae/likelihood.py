"""Likelihood helpers shared by the VAE family: log densities, the IWAE bound, MMD, nats → bits/dim.

All log densities are summed over every non-batch dimension and returned in nats.

The Bernoulli "likelihood" of images whose intensities are in [0, 1] but not binary is the usual surrogate
``Σ x·log p + (1-x)·log(1-p)``: it is not a normalized density on 8-bit (or continuous) data, so bits/dim computed
from it are comparable between Bernoulli-decoder models only, not with published discretized-likelihood numbers.
"""

from __future__ import annotations

import math

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
