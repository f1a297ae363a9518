"""Modality invariance: a CLIP-style contrastive alignment loss between pooled modality embeddings.

Each modality's pooled embedding (B, d_i) is projected by its own linear map to a shared ``proj_dim`` space and
L2-normalised; for every pair of modalities (a, b) the symmetric InfoNCE loss (Radford et al. 2021; van den Oord
et al. 2018) treats row i of a and row i of b as the positive pair and the other B - 1 rows as negatives:

    logits = z_a @ z_b.T / temperature                     # (B, B)
    loss   = (CE(logits, arange(B)) + CE(logits.T, arange(B))) / 2

With more than two modalities the loss is the mean over all unordered pairs. A fusion classifier switches it on by
adding ``align_weight * alignment(pooled_embeddings)`` to its task loss.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn


def symmetric_info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of two (B, D) batches of L2-normalised embeddings, row i of each being a positive pair.

    Returns a scalar; it equals ``log(B)`` when all similarities are equal (nothing aligned, nothing separated).
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"expected two (B, D) tensors of the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    logits = z_a @ z_b.T / temperature  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class ContrastiveAlignment(nn.Module):
    """Projects each modality's pooled embedding to a shared space and returns the mean pairwise symmetric InfoNCE.

    ``forward([(B, d_1), (B, d_2), ...]) -> ()`` scalar loss (mean over the M(M-1)/2 modality pairs).

    Args:
        in_dims: Width d_i of each modality's pooled embedding (at least two modalities).
        proj_dim: Width of the shared space (one ``nn.Linear(d_i, proj_dim)`` per modality).
        temperature: Softmax temperature of the similarity logits (CLIP's initial value, 0.07, by default).
        learn_temperature: If True the temperature is a learned parameter (stored as log 1/T, as CLIP's logit
            scale, clamped so that 1/T <= 100); otherwise it is a fixed buffer.
    """

    #: The largest logit scale 1/T a learned temperature may reach (CLIP's clamp).
    max_logit_scale = 100.0

    def __init__(
        self, in_dims: list[int], proj_dim: int = 64, temperature: float = 0.07, learn_temperature: bool = False
    ) -> None:
        super().__init__()
        if len(in_dims) < 2:
            raise ValueError(f"contrastive alignment needs at least two modalities, got in_dims={list(in_dims)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.in_dims = list(in_dims)
        self.proj_dim = proj_dim
        self.projections = nn.ModuleList(nn.Linear(d, proj_dim) for d in self.in_dims)
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)

    @property
    def temperature(self) -> torch.Tensor:
        """The current temperature T (a 0-d tensor)."""
        return 1.0 / self.log_logit_scale.exp().clamp(max=self.max_logit_scale)

    def project(self, embeddings: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[(B, d_i)] -> [(B, proj_dim)]`` L2-normalised embeddings in the shared space."""
        if len(embeddings) != len(self.projections):
            raise ValueError(f"expected {len(self.projections)} modalities, got {len(embeddings)}")
        return [F.normalize(proj(x), dim=-1) for proj, x in zip(self.projections, embeddings)]

    def forward(self, embeddings: list[torch.Tensor]) -> torch.Tensor:  # [(B, d_i)] -> () scalar
        z = self.project(embeddings)
        temperature = self.temperature
        losses = [symmetric_info_nce(z[a], z[b], temperature) for a, b in combinations(range(len(z)), 2)]
        return torch.stack(losses).mean()
