"""Vendi score (Friedman & Dieng, 2023): the effective number of distinct generated samples.

With K the (n, n) cosine-similarity Gram matrix of the generated features (K_ii = 1) and λ the eigenvalues of
K / n (non-negative, summing to 1), the Vendi score is exp(H(λ)), H the Shannon entropy -Σ λ log λ over the
positive eigenvalues (the order-1 score of the ``vendi-score`` package, ``score_X`` / ``score_K``). It is 1 when
all samples are identical and n when they are mutually orthogonal; higher is more diverse.

With X the (n, D) row-normalised features, K / n = X Xᵀ / n has the same non-zero eigenvalues as Xᵀ X / n (D, D);
the smaller of the two is decomposed, so memory is O(min(n, D)²) and n may be large.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS


def vendi(x: torch.Tensor) -> torch.Tensor:
    """The order-1 Vendi score of features ``x`` (n, D) under the cosine-similarity kernel, float64 scalar.

    Raises:
        ValueError: ``x`` is not 2-D, is empty, or has an all-zero row (no cosine similarity).
    """
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected (n, D) features with n >= 1, got {tuple(x.shape)}")
    x = x.double()
    if bool((x.norm(dim=1) == 0).any()):
        raise ValueError("Vendi score: a feature row is all zeros (its cosine similarity is undefined)")
    x = F.normalize(x, dim=1)  # (n, D) unit rows
    n, d = x.shape
    gram = x @ x.T if n <= d else x.T @ x  # (n, n) or (D, D): same non-zero eigenvalues
    eigenvalues = torch.linalg.eigvalsh(gram / n)  # (min(n, D),)
    p = eigenvalues[eigenvalues > 0]  # round-off negatives dropped, as in vendi_score.entropy_q
    return torch.exp(-(p * p.log()).sum())


@METRICS.register("vendi")
class Vendi(BenchMetric, Metric):
    """Vendi score of the generated features alone; higher is better (more diverse).

    Keeps every generated feature (memory n × D).
    """

    input_kind = "features"
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> Vendi:
        return cls()

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.Features("fake"),)

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        self.update(inputs[rq.Features("fake")])

    def update(self, features: torch.Tensor) -> None:  # features (N, D)
        self.fake_features.append(features.detach().double())

    def compute(self) -> torch.Tensor:
        return vendi(dim_zero_cat(self.fake_features))

    def protocol(self) -> str:
        return "kernel=cosine,q=1 (shannon entropy),eigenvalues=K/n (n x n or D x D),dtype=float64"
