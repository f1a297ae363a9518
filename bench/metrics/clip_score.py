"""CLIP score (Hessel et al., 2021): how well generated images match their captions; higher is better.

Per image-caption pair, ``100 * max(cos(image_emb, text_emb), 0)``; the score is the mean over pairs, and the
population standard deviation (ddof=0) over pairs is kept in ``last_std``. Same formula as torchmetrics'
``CLIPScore`` (which does not run with transformers 5), written here so it takes cosines from any registered CLIP
backbone (:class:`bench.backbones.open_clip_backbone.OpenCLIPBackbone.similarity`) and never holds the network.

States are float64 sums (sum, sum of squares, count) and an integer count of truncated captions, all reduced
with ``sum``, so the value is the same on one process or split across DDP ranks.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, Estimate, MetricContext
from bench.metrics.registry import METRICS

#: Scale of the score (CLIPScore's w = 100 as in torchmetrics; Hessel et al. use w = 2.5 on their own scale).
SCALE = 100.0
_COS_TOLERANCE = 1e-3  # float32 cosines can exceed ±1 by rounding


def clip_score_per_sample(cosine: torch.Tensor) -> torch.Tensor:
    """``100 * max(cosine, 0)`` in float64 (same shape)."""
    return SCALE * cosine.double().clamp(min=0.0)


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (ddof=0) over pairs of ``100 * max(cos(image_emb[i], text_emb[i]), 0)``, float64.

    Args:
        image_emb: (N, E) image embeddings (normalized or not). text_emb: (N, E) text embeddings of the captions.
    """
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"clip_score takes two (N, E) tensors of the same shape; got {tuple(image_emb.shape)} and "
            f"{tuple(text_emb.shape)}"
        )
    if len(image_emb) == 0:
        raise ValueError("clip_score needs at least one image-caption pair")
    scores = clip_score_per_sample(F.cosine_similarity(image_emb.double(), text_emb.double(), dim=-1))
    return scores.mean(), scores.std(unbiased=False)


@METRICS.register("clip-score")
class CLIPScore(BenchMetric, Metric):
    """CLIP score of generated images against their captions; higher is better.

    ``input_kind = "image_text"``: ``update(cosine (N,), num_truncated=0)`` with the cosine similarity of each
    generated image with its caption, as returned by a CLIP backbone's ``similarity(images_uint8, captions)``,
    and the number of those captions that were truncated to the text context (the backbone's
    ``last_num_truncated`` after that call). ``compute()`` returns the mean (float64 scalar); the std over pairs is
    in ``last_std`` and the total truncated count in ``last_num_truncated`` (with a warning when > 0, also stated
    in :meth:`protocol`).

    The evaluator feeds it the images a text-to-image model generates from the reference split's captions, scored
    against those captions by the track's ``eval.clip_backbone`` (see :mod:`bench.metrics.cross_modal`).

    Args:
        real_split: The split whose captions the images were generated from (stated in :meth:`protocol`); None
            when the pairs come from elsewhere.
    """

    input_kind = "image_text"
    higher_is_better = True
    full_state_update = False

    def __init__(self, real_split: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.real_split = real_split
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("score_sq_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_truncated", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.last_std = torch.zeros((), dtype=torch.float64)
        self.last_num_truncated = 0

    @classmethod
    def build(cls, ctx: MetricContext) -> CLIPScore:
        return cls(real_split=ctx.real_split)

    def update(self, cosine: torch.Tensor, num_truncated: int = 0) -> None:  # cosine (N,) in [-1, 1]
        cosine = torch.as_tensor(cosine)
        if cosine.ndim != 1:
            raise ValueError(f"clip-score takes (N,) cosine similarities, got shape {tuple(cosine.shape)}")
        cosine = cosine.detach().to(self.score_sum.device, torch.float64)
        if not torch.isfinite(cosine).all() or (cosine.abs() > 1 + _COS_TOLERANCE).any():
            raise ValueError(
                "clip-score takes cosine similarities in [-1, 1] (not scores scaled by 100); got values in "
                f"[{cosine.min().item():.4g}, {cosine.max().item():.4g}]"
            )
        if num_truncated < 0 or num_truncated > len(cosine):
            raise ValueError(f"num_truncated={num_truncated} must be between 0 and the batch size {len(cosine)}")
        scores = clip_score_per_sample(cosine)
        self.score_sum += scores.sum()
        self.score_sq_sum += scores.square().sum()
        self.count += len(scores)
        self.num_truncated += int(num_truncated)

    def compute(self) -> torch.Tensor:
        n = self.count
        if n.item() == 0:
            raise ValueError("clip-score has no image-caption pairs (update was never called with data)")
        mean = self.score_sum / n
        self.last_std = (self.score_sq_sum / n - mean.square()).clamp(min=0.0).sqrt()
        self.last_num_truncated = int(self.num_truncated.item())
        if self.last_num_truncated:
            warnings.warn(
                f"clip-score: {self.last_num_truncated} of {int(n.item())} captions exceeded the text encoder's "
                f"context and were truncated before scoring",
                stacklevel=2,
            )
        return mean

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.CaptionSimilarity("conditional-real" if self.on_reference_data else "conditional"),)

    def feed(self, inputs) -> None:
        cosine, truncated = inputs[self.requests()[0]]
        self.update(cosine, num_truncated=truncated)

    def values(self, name: str) -> dict[str, Estimate]:
        mean = float(self.compute())
        return {name: Estimate(mean, float(self.last_std))}

    def protocol(self) -> str:
        base = f"score=100*max(cos,0),mean_over=pairs,float64,truncated_captions={self.last_num_truncated}"
        return base if self.real_split is None else f"conditioned_on=captions of {self.real_split},{base}"
