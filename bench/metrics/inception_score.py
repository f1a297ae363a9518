"""Inception Score (Salimans et al., 2016) from backbone class logits of generated images.

The math follows torch-fidelity's ``metric_isc.py`` exactly (float64 softmax, samples shuffled with
``np.random.RandomState(seed).permutation``, ``splits`` contiguous chunks, exp of the mean KL to the chunk's
marginal, mean and population std over chunks), so with seed 2020 and the Inception backbone it reproduces
torch-fidelity's value. It is written here to take logits from any registered backbone and the run's seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics.base import BenchMetric, Estimate, MetricContext
from bench.metrics.registry import METRICS


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 2020, shuffle: bool = True) -> tuple[float, float]:
    """Mean and std over splits of exp(E_x KL(p(y|x) || p(y))).

    Args:
        logits: (N, K) class logits of generated images.
        splits: Number of contiguous chunks (after shuffling) the score is computed on.
        seed: Seed of the shuffle (torch-fidelity's default is 2020).
        shuffle: Shuffle the samples before splitting.

    Raises:
        ValueError: If there are fewer samples than splits.
    """
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"Inception Score needs at least {splits} samples (one per split), got {n}")
    if shuffle:
        logits = logits[np.random.RandomState(seed).permutation(n)]
    logits = logits.double()
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)  # (N, K)
    scores = []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        q = p[chunk].mean(dim=0, keepdim=True)  # (1, K) marginal of the chunk
        kl = (p[chunk] * (log_p[chunk] - q.log())).sum(dim=1)  # (n_chunk,)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


@METRICS.register("is")
class InceptionScore(BenchMetric, Metric):
    """Inception Score of generated images on the backbone's classifier; higher is better.

    Args:
        splits: Number of splits (10 in the paper protocol). seed: Seed of the shuffle.
    """

    input_kind = "logits"
    higher_is_better = True
    full_state_update = False

    def __init__(self, splits: int = 10, seed: int = 2020, **kwargs) -> None:
        super().__init__(**kwargs)
        self.splits, self.seed = splits, seed
        self.add_state("logits", [], dist_reduce_fx="cat")

    @classmethod
    def build(cls, ctx: MetricContext) -> InceptionScore:
        return cls(splits=ctx.is_splits, seed=ctx.seed)

    def update(self, logits: torch.Tensor) -> None:  # (N, K)
        self.logits.append(logits.double())

    def compute(self) -> torch.Tensor:
        mean, self.last_std = inception_score(dim_zero_cat(self.logits), self.splits, self.seed)
        return torch.tensor(mean, dtype=torch.float64)

    def values(self, name: str) -> dict[str, Estimate]:
        mean = float(self.compute())
        return {name: Estimate(mean, float(self.last_std))}

    def protocol(self) -> str:
        return f"splits={self.splits},shuffle seed={self.seed},float64"
