"""Negative log-likelihood in bits per dimension, from a model's per-image NLL estimates in nats.

The evaluator asks a :class:`~models.base.LikelihoodModel` (e.g. an autoencoder) for ``model.nll(x, num_samples=metric.importance_samples,
generator=gen)`` — an importance-weighted (IWAE, Burda et al., 2016) upper bound on -log p(x), nats per image —
and passes it to ``update``. bits/dim = Σ nats / (Σ dims · ln 2), dims = C·H·W per image, or what the model
scores (``likelihood_dims``: the tokens of an autoregressive model's quantized grid, whose NLL is exact).

The suite's decoders are Bernoulli on [0, 1] intensities: the "likelihood" is the Bernoulli surrogate, not a
normalized density on 8-bit data, so the numbers compare the suite's models with each other, not with published
(discretized-likelihood) bits/dim.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torchmetrics import Metric

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.registry import METRICS


def nats_to_bits_per_dim(nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Nats per image → bits per dimension: ``nats / (num_dims · ln 2)`` with num_dims = C·H·W."""
    return nats / (num_dims * math.log(2))


@METRICS.register("nll-bpd")
class NLLBitsPerDim(BenchMetric, Metric):
    """Mean negative log-likelihood bound in bits/dim over images; lower is better.

    States are float64 sums (nats and dimensions), summed across processes, so the value does not depend on how
    the images were split into batches or ranks.

    Args:
        importance_samples: K the evaluator passes to ``model.nll`` (recorded in the protocol).
        likelihood: The model's observation model (recorded in the protocol; the evaluator sets the model's).
        bound: What the model's NLL is: "exact" or "upper(IWAE)" (recorded in the protocol).
        num_dims: Default dimensions per image (C·H·W) for ``update`` calls that omit it.
    """

    input_kind = "likelihood"  # type: ignore[assignment]  (added to bench.metrics.base.InputKind by the lead)
    higher_is_better = False
    full_state_update = False
    #: Default number of importance samples per image.
    default_importance_samples: ClassVar[int] = 64

    def __init__(
        self,
        importance_samples: int = default_importance_samples,
        likelihood: str = "bernoulli(surrogate on [0;1] intensities)",
        bound: str = "upper(IWAE)",
        num_dims: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if importance_samples < 1:
            raise ValueError(f"importance_samples must be >= 1, got {importance_samples}")
        self.importance_samples = importance_samples
        self.likelihood = likelihood
        self.bound = bound
        self.num_dims = num_dims
        self.add_state("sum_nats", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_dims", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @classmethod
    def build(cls, ctx: MetricContext) -> NLLBitsPerDim:
        return cls(importance_samples=ctx.importance_samples, num_dims=math.prod(ctx.image_shape))

    def update(self, nll_nats: torch.Tensor, num_dims: int | None = None) -> None:
        """Adds per-image NLL estimates.

        Args:
            nll_nats: (B,) negative log-likelihood (bound) per image in nats.
            num_dims: Dimensions per image, C·H·W; defaults to the one given at construction.
        """
        num_dims = num_dims if num_dims is not None else self.num_dims
        if num_dims is None or num_dims < 1:
            raise ValueError("nll-bpd needs num_dims (C·H·W) per image, at update or construction")
        if nll_nats.ndim != 1:
            raise ValueError(f"nll_nats must be (B,) nats per image, got shape {tuple(nll_nats.shape)}")
        nats = nll_nats.detach().to(device=self.sum_nats.device, dtype=torch.float64)
        self.sum_nats += nats.sum()
        self.sum_dims += float(num_dims) * len(nats)
        self.num_images += len(nats)

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.Likelihoods(self.importance_samples),)

    def feed(self, inputs) -> None:
        answer = inputs[self.requests()[0]]  # bench.providers.LikelihoodAnswer
        self.likelihood, self.bound = answer.likelihood, answer.bound
        for nll in answer.nll:
            self.update(nll, num_dims=answer.num_dims)

    def compute(self) -> torch.Tensor:
        """Mean bits/dim (float64); NaN before any update."""
        if self.num_images == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.sum_nats / (self.sum_dims * math.log(2))

    def protocol(self) -> str:
        """The likelihood, the bound and the dimensions per image the bits are spread over; the importance samples
        only for a bound that uses them (an exact NLL ignores them)."""
        if self.num_images > 0:
            dims = f"{float(self.sum_dims / self.num_images):g} per image"
        else:
            dims = f"{self.num_dims} per image" if self.num_dims else "C*H*W"
        samples = "" if self.bound == "exact" else f"importance_samples={self.importance_samples},"
        return f"{samples}likelihood={self.likelihood},bound={self.bound},units=bits/dim,dims={dims}"
