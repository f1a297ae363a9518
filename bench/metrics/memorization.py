"""Authenticity percentage (Stein et al., 2023, dgm-eval ``compute_authpct``) and its complement, memorization.

For a generated sample g, let t be its nearest training sample, d1 = d(g, t), and d2 the distance from t to
t's nearest *other* training sample. g is *authentic* when d2 < d1: g lies farther from t than t's own
training neighbour does. A generated copy of a training point (d1 = 0) is never authentic.

* ``authpct`` = 100 × fraction of authentic generated samples (higher is better);
* ``memorization`` = fraction of generated samples that are *not* authentic, in [0, 1]
  (= 1 - authpct / 100; lower is better).

The comparison is strict and the nearest training sample is the first one on a tie, as in dgm-eval (exact
ties d1 = d2 are rare with real-valued features, and round-off may decide them in either implementation). Distances
are euclidean, computed with :func:`torch.cdist` in float64 in row blocks (memory O(chunk × N_train)), after
translating both sets by the training mean (distances unchanged, less round-off in cdist's matmul path). The
train-to-train nearest-neighbour pass costs O(N_train² D): each of the two metrics runs it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.prc import knn_radii
from bench.metrics.registry import METRICS


#: The protocol pairs shared by ``authpct`` and ``memorization``.
_AUTHENTIC = ("authentic=d2<d1 (d1: fake to nearest train; d2: that train to its nearest other train),"
              "comparison=strict,distance=euclidean,dtype=float64")


def authenticity(train: torch.Tensor, fake: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """Whether each generated sample is authentic (d2 < d1, see the module docstring), shape (M,) bool.

    Args:
        train: (N, D) training features, N >= 2. fake: (M, D) generated features.
        chunk_size: Rows per distance block; peak extra memory is about chunk_size × N float64.
    """
    if train.ndim != 2 or fake.ndim != 2 or train.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) features, got {tuple(train.shape)} and {tuple(fake.shape)}")
    if len(train) < 2 or len(fake) < 1:
        raise ValueError(f"authenticity needs at least 2 training and 1 generated sample, got {len(train)} and "
                         f"{len(fake)}")
    center = train.double().mean(0)  # (D,)
    train, fake = train.double() - center, fake.double() - center
    d2 = knn_radii(train, 1, chunk_size)  # (N,) distance to the nearest other training sample
    authentic = torch.empty(len(fake), dtype=torch.bool, device=fake.device)
    for start in range(0, len(fake), chunk_size):
        block = fake[start:start + chunk_size]  # (c, D)
        d1, nearest = torch.cdist(block, train).min(dim=1)  # (c,), (c,): first nearest on a tie
        authentic[start:start + len(block)] = d2.to(d1.device)[nearest] < d1
    return authentic


def authpct(train: torch.Tensor, fake: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """100 × the fraction of authentic generated samples (dgm-eval's AuthPct), float64 scalar."""
    return 100 * authenticity(train, fake, chunk_size).double().mean()


def memorization(train: torch.Tensor, fake: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """The fraction of generated samples that are not authentic (1 - authpct / 100), float64 scalar in [0, 1]."""
    return (~authenticity(train, fake, chunk_size)).double().mean()


@METRICS.register("authpct")
class AuthPct(BenchMetric, Metric):
    """Authenticity percentage of generated features against the training features; higher is better.

    Keeps every feature (memory grows with N); the distances are computed in blocks.

    Args:
        chunk_size: Rows per distance block.
    """

    input_kind = "features"
    higher_is_better = True
    full_state_update = False

    def __init__(self, chunk_size: int = 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunk_size = chunk_size
        self.add_state("train_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> AuthPct:
        return cls()

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.Features("train"), rq.Features("fake"))

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        self.update(inputs[rq.Features("train")], train=True)
        self.update(inputs[rq.Features("fake")], train=False)

    def update(self, features: torch.Tensor, train: bool) -> None:  # features (N, D)
        (self.train_features if train else self.fake_features).append(features.detach().double())

    def compute(self) -> torch.Tensor:
        return authpct(dim_zero_cat(self.train_features), dim_zero_cat(self.fake_features), self.chunk_size)

    def protocol(self) -> str:
        return f"unit=percent authentic,{_AUTHENTIC}"


@METRICS.register("memorization")
class Memorization(AuthPct):
    """Fraction of generated samples that are not authentic (1 - authpct / 100); lower is better."""

    higher_is_better = False

    @classmethod
    def build(cls, ctx: MetricContext) -> Memorization:
        return cls()

    def compute(self) -> torch.Tensor:
        return memorization(dim_zero_cat(self.train_features), dim_zero_cat(self.fake_features), self.chunk_size)

    def protocol(self) -> str:
        return f"unit=fraction not authentic,{_AUTHENTIC}"
