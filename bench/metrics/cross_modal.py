"""Metrics of caption-conditioned generation: cross-FID/KID, CLIP score, coherence, and their real-data ceilings.

The protocol (run by :class:`bench.evaluate.Evaluator` for :class:`~models.base.TextToImageGenerator` models):
take the first ``eval.n_fake`` examples of the reference split (all of them if it has fewer, or when
``n_fake`` is 0); generate **one image per example from its caption tokens** with
``model.sample_from_text(text, generator)``, the generator a CPU ``torch.Generator`` seeded with the run's seed;
quantize the images to uint8 exactly as every feature path does (:func:`bench.features.to_uint8`); then

* ``cross-fid`` / ``cross-kid``: FID / KID between the track feature backbone's features of those images and of the
  whole reference split (same math and states as ``fid`` / ``kid``; lower is better);
* ``clip-score``: 100·max(cos, 0) between each generated image and *its own* caption string, cosines from the
  track's image–text backbone (``eval.clip_backbone``; :class:`ImageTextScorer`); higher is better;
* ``coherence``: top-1 accuracy of the track's classifier backbone (``eval.classifier_backbone``;
  :class:`ImageClassifierBackbone`) on the generated images against the label of each caption's example
  (Shi et al., 2019, "cross-modal coherence"); higher is better.

``clip-score-real`` and ``coherence-real`` score the *real* reference images of the same examples in the same way
(identical for every model and seed): the value a perfect generator would reach under that backbone, so readers can
read ``clip-score`` and ``coherence`` against their ceiling. Every row states ``conditioned_on=captions of <split>``
and the backbone (name and sha256) that scored it.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from torchmetrics import Metric

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, MetricContext
from bench.metrics.clip_score import CLIPScore
from bench.metrics.fid import FID
from bench.metrics.kid import KID
from bench.metrics.registry import METRICS


def conditioning(split: str) -> str:
    """The protocol fragment naming what generations were conditioned on."""
    return f"conditioned_on=captions of {split}"


@runtime_checkable
class ImageTextScorer(Protocol):
    """What ``eval.clip_backbone`` must provide (e.g. ``clip-vit-b-32``, or an in-domain image–text evaluator).

    Attributes:
        registry_name: Its registered name. weights_sha256: sha256 of its weights file.
        last_num_truncated: Captions truncated to the text context by the last :meth:`similarity` call.
    """

    registry_name: str
    weights_sha256: str

    def similarity(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Cosine (B,) of each uint8 image (B, C, H, W) with its caption."""
        ...


@runtime_checkable
class ImageClassifierBackbone(Protocol):
    """What ``eval.classifier_backbone`` must provide (e.g. an in-domain classifier).

    Attributes:
        registry_name: Its registered name. weights_sha256: sha256 of its weights file.
    """

    registry_name: str
    weights_sha256: str

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) of uint8 images (B, C, H, W)."""
        ...


@torch.no_grad()
def caption_similarities(
    scorer: ImageTextScorer, images: torch.Tensor, captions: list[str], batch_size: int
) -> tuple[torch.Tensor, int]:
    """Cosine of each image with its caption, in batches.

    Args:
        scorer: The image–text backbone. images: (N, C, H, W) uint8. captions: N strings, paired in order.
        batch_size: Pairs per backbone call.

    Returns:
        (N,) float32 cosines on the CPU and the number of captions the backbone truncated.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions; they are scored in pairs")
    device = _device(scorer)
    cosines, truncated = [], 0
    for i in range(0, len(images), batch_size):
        cos = scorer.similarity(images[i : i + batch_size].to(device), captions[i : i + batch_size])  # (b,)
        cosines.append(cos.float().cpu())
        truncated += int(getattr(scorer, "last_num_truncated", 0))
    return torch.cat(cosines), truncated


@torch.no_grad()
def classifier_logits(classifier: ImageClassifierBackbone, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, K) float32 logits on the CPU of (N, C, H, W) uint8 images, in batches."""
    device = _device(classifier)
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    return torch.cat([classifier.classify(chunk.to(device)).float().cpu() for chunk in chunks])


def _device(module: object) -> torch.device:
    """The device of a backbone's parameters or buffers (CPU when it has none)."""
    if isinstance(module, torch.nn.Module):
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------------- distances
@METRICS.register("cross-fid")
class CrossFID(FID):
    """FID between images generated from the reference split's captions and the reference images; lower is better.

    Args:
        num_features: Feature dimension D. real_split: The split whose captions conditioned the generations.
    """

    input_kind = "conditional_features"  # type: ignore[assignment]

    def __init__(self, num_features: int, real_split: str = "test", **kwargs) -> None:
        super().__init__(num_features=num_features, **kwargs)
        self.real_split = real_split

    @classmethod
    def build(cls, ctx: MetricContext) -> CrossFID:
        return cls(num_features=ctx.num_features, real_split=ctx.real_split)

    def protocol(self) -> str:
        return f"{conditioning(self.real_split)},{super().protocol()}"


@METRICS.register("cross-kid")
class CrossKID(KID):
    """KID between images generated from the reference split's captions and the reference images; lower is better.

    Args:
        subsets, subset_size, seed: As for ``kid``. real_split: The split whose captions conditioned the generations.
    """

    input_kind = "conditional_features"  # type: ignore[assignment]

    def __init__(
        self, subsets: int = 100, subset_size: int = 1000, seed: int = 0, real_split: str = "test", **kwargs
    ) -> None:
        super().__init__(subsets=subsets, subset_size=subset_size, seed=seed, **kwargs)
        self.real_split = real_split

    @classmethod
    def build(cls, ctx: MetricContext) -> CrossKID:
        return cls(subsets=ctx.kid_subsets, subset_size=ctx.kid_subset_size, seed=ctx.seed, real_split=ctx.real_split)

    def protocol(self) -> str:
        return f"{conditioning(self.real_split)},{super().protocol()}"


# ------------------------------------------------------------------------------------------------- agreement
@METRICS.register("clip-score-real")
class CLIPScoreReal(CLIPScore):
    """``clip-score`` of the real reference images with their own captions: the ceiling of ``clip-score`` under the
    same image–text backbone; higher is better."""

    on_reference_data: ClassVar[bool] = True

    def protocol(self) -> str:
        split = self.real_split
        self.real_split = None  # the parent's text without "conditioned_on": nothing was generated
        try:
            base = super().protocol()
        finally:
            self.real_split = split
        return f"pairs=real images of {split} with their captions,{base}"


@METRICS.register("coherence")
class Coherence(BenchMetric, Metric):
    """Top-1 accuracy of a classifier backbone on caption-conditioned generations against the captions' labels;
    higher is better.

    ``update(logits (N, K), target (N,))``; states are integer counts reduced with ``sum`` (DDP-safe).

    Args:
        num_classes: The dataset's number of classes K (0: not checked). real_split: The reference split.
    """

    input_kind = "conditional_logits"
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int = 0, real_split: str = "test", **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.real_split = num_classes, real_split
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @classmethod
    def build(cls, ctx: MetricContext) -> Coherence:
        return cls(num_classes=ctx.num_classes, real_split=ctx.real_split)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:  # logits (N, K), target (N,)
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"{self._name()} takes logits (N, K) and targets (N,); got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}"
            )
        if self.num_classes and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{self._name()}: the classifier backbone predicts {logits.shape[1]} classes but the dataset has "
                f"{self.num_classes}; use a classifier trained on this dataset's labels"
            )
        pred = logits.argmax(dim=1).to(self.correct.device)  # (N,)
        self.correct += (pred == target.to(pred.device)).sum()
        self.total += len(target)

    def compute(self) -> torch.Tensor:
        if int(self.total) == 0:
            raise ValueError(f"{self._name()} has no examples (update was never called with data)")
        return self.correct.double() / self.total.double()

    def requests(self) -> tuple[rq.Request, ...]:
        source = "conditional-real" if self.on_reference_data else "conditional"
        return rq.ClassifierLogits(source), rq.Labels(source)

    def feed(self, inputs) -> None:
        logits, labels = (inputs[r] for r in self.requests())
        self.update(logits, labels)

    def protocol(self) -> str:
        return f"{conditioning(self.real_split)},top1 vs the caption's label"

    def _name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)


@METRICS.register("coherence-real")
class CoherenceReal(Coherence):
    """The classifier backbone's top-1 accuracy on the real reference images: the ceiling of ``coherence``;
    higher is better."""

    on_reference_data: ClassVar[bool] = True

    def protocol(self) -> str:
        return f"images=real images of {self.real_split},top1 vs their label"
