"""Product of Gaussian experts: the late-fusion rule of multimodal VAEs (MVAE, Wu & Goodman, 2018).

The product of diagonal Gaussians ``N(μ_e, σ_e²)`` is (up to normalization) the Gaussian whose precision is the sum of
the experts' precisions and whose mean is their precision-weighted mean::

    T = Σ_e 1/σ_e²        μ = (Σ_e μ_e/σ_e²) / T        σ² = 1/T

Wu & Goodman (2018), "Multimodal Generative Models for Scalable Weakly-Supervised Learning" (NeurIPS), use it to
combine unimodal posteriors ``q̃(z | x_m)`` with the prior expert ``p(z) = N(0, I)``:
``q(z | x_1..x_M) ∝ p(z) Π_m q̃(z | x_m)``; a missing modality is simply left out of the product, so one inference
network per modality serves every subset of observed modalities.
"""

from __future__ import annotations

import torch


def product_of_experts(
    mus: torch.Tensor,
    logvars: torch.Tensor,
    mask: torch.Tensor | None = None,
    include_prior: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted product of E diagonal Gaussian experts, computed in log space.

    The log-precisions ``-logvar_e`` are combined with ``logsumexp`` (``log T``) and the mean weights are their
    ``softmax`` over experts (``(1/σ_e²) / T``), so neither very small nor very large variances overflow.

    Args:
        mus: (E, B, D) expert means.
        logvars: (E, B, D) expert log-variances.
        mask: (E, B) bool, True where expert e is present for sample b; absent experts are dropped from that
            sample's product (their means and variances are never read). None: every expert is present.
        include_prior: Also multiply by the N(0, I) prior expert (always present), as in MVAE.

    Returns:
        ``(mu, logvar)``, each (B, D): the product's mean and log-variance.

    Raises:
        ValueError: If the shapes disagree, or (without the prior) some sample has no present expert.
    """
    if mus.shape != logvars.shape or mus.dim() != 3:
        raise ValueError(f"mus and logvars must both be (E, B, D), got {tuple(mus.shape)} and {tuple(logvars.shape)}")
    if mask is not None:
        if mask.shape != mus.shape[:2]:
            raise ValueError(f"mask must be (E, B) = {tuple(mus.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.to(torch.bool)
        if not include_prior and not bool(mask.any(0).all()):
            raise ValueError("every sample needs at least one present expert when the prior is left out")
    if include_prior:
        prior = mus.new_zeros(1, *mus.shape[1:])  # (1, B, D): mean 0, log-variance 0
        mus = torch.cat([prior, mus], dim=0)  # (E + 1, B, D)
        logvars = torch.cat([prior, logvars], dim=0)
        if mask is not None:
            mask = torch.cat([mask.new_ones(1, mask.shape[1]), mask], dim=0)  # (E + 1, B)
    log_precision = -logvars  # (E, B, D)
    if mask is not None:
        absent = ~mask.unsqueeze(-1)  # (E, B, 1)
        log_precision = log_precision.masked_fill(absent, float("-inf"))
        mus = mus.masked_fill(absent, 0.0)  # an absent expert's mean may be anything (even NaN): never read
    log_total_precision = torch.logsumexp(log_precision, dim=0)  # (B, D): log T
    weights = torch.softmax(log_precision, dim=0)  # (E, B, D): (1/σ_e²) / T, zero for absent experts
    mu = (weights * mus).sum(0)  # (B, D)
    return mu, -log_total_precision
