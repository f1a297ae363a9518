"""Joint coherence of unconditional samples (Shi et al., 2019, MMVAE; MultiVae's "joint coherence").

A multimodal generator draws ``n = eval.n_fake`` latents from its prior and decodes both modalities of each: an
image and a caption (``model.sample_joint(n, generator)``, the generator a CPU ``torch.Generator`` seeded with the
run's seed, in batches of ``eval.batch_size``; the images quantized to uint8 like every other image path; the
caption the argmax token of each position). Two judges read the pair:

* the track's classifier backbone (``eval.classifier_backbone``, e.g. ``classifier-indomain-digits``) reads the
  image: its argmax class;
* the datamodule reads the caption: ``dm.caption_label_sets(text_ids)`` says which classes a caption allows, or None
  when the token sequence is no valid caption of the dataset. For ``captioned-digits`` a valid caption is exactly
  one of the 48 strings its templates produce (trailing padding ignored) and allows one parity × magnitude group,
  {0,2,4}, {1,3}, {5,7,9} or {6,8} (:meth:`datamodules.captioned_digits.CaptionedDigitsDataModule.caption_label_sets`).

A sample is **jointly coherent** when its caption is valid *and* the classifier's argmax class of its image is one
the caption allows. ``joint-coherence`` is the fraction of coherent samples (higher is better); its protocol records
the number of samples, the validity rule and the fraction of valid captions (the classifier's name and sha256 are
added by the evaluator). ``joint-coherence-real`` scores the real (image, caption) pairs of the whole reference split
the same way: its ceiling under that classifier (every real caption is valid and allows the true label, so it is at
least the classifier's accuracy on those images, ``coherence-real`` on the same split).

Chance: for an image and a caption drawn independently, the caption valid and both class-balanced (the caption of a
uniformly drawn class, the classifier's argmax uniform over the K classes), the value is ``Σ_g p(g)²`` over the
caption groups, ``p(g) = |g| / K``: on ``captioned-digits`` (groups of 3, 2, 3, 2 of 10 digits)
``0.3² + 0.2² + 0.3² + 0.2² = 0.26``. A model whose captions are never valid scores 0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torchmetrics import Metric

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, Estimate, MetricContext
from bench.metrics.registry import METRICS



@dataclass(frozen=True)
class CaptionLabels:
    """The answer to :class:`~bench.metrics.requests.CaptionLabelSets`.

    Attributes:
        label_sets: Per caption, the labels it allows (a frozenset), or None for an invalid caption.
        rule: What makes a caption valid, as the datamodule states it (``dm.caption_validity``), for the protocol.
    """

    label_sets: list[frozenset[int] | None]
    rule: str


@runtime_checkable
class JointSampler(Protocol):
    """A model that samples both modalities from its prior (what the ``joint`` source needs)."""

    def sample_joint(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (n, C, H, W) in [0, 1], text (n, L) long ids)`` from ``n`` prior draws."""
        ...


def joint_coherence_counts(
    logits: torch.Tensor, label_sets: Sequence[Collection[int] | None]
) -> tuple[int, int, int]:
    """Counts of jointly coherent samples, of valid captions and of samples.

    Args:
        logits: (N, K) classifier logits of the images.
        label_sets: N entries, paired in order with the images: the labels a caption allows, or None for an invalid
            caption.

    Returns:
        ``(coherent, valid, total)``: coherent counts the samples whose caption is valid and whose argmax class
        lies in its label set.

    Raises:
        ValueError: If ``logits`` is not (N, K) or there are not N label sets.
    """
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"joint coherence takes (N, K) classifier logits, got {tuple(logits.shape)}")
    if len(label_sets) != len(logits):
        raise ValueError(f"{len(logits)} images but {len(label_sets)} captions; they are scored in pairs")
    pred = logits.argmax(dim=1).tolist()  # (N,)
    valid = sum(s is not None for s in label_sets)
    coherent = sum(s is not None and p in s for p, s in zip(pred, label_sets))
    return coherent, valid, len(pred)


def joint_coherence(logits: torch.Tensor, label_sets: Sequence[Collection[int] | None]) -> torch.Tensor:
    """The fraction of jointly coherent (image, caption) pairs (:func:`joint_coherence_counts`), 0-dim float64.

    Raises:
        ValueError: On no pairs, and as :func:`joint_coherence_counts`.
    """
    coherent, _, total = joint_coherence_counts(logits, label_sets)
    if total == 0:
        raise ValueError("joint coherence needs at least one (image, caption) pair")
    return torch.tensor(coherent / total, dtype=torch.float64)


@METRICS.register("joint-coherence")
class JointCoherence(BenchMetric, Metric):
    """Fraction of unconditional (image, caption) samples whose caption is valid and whose image the classifier
    backbone puts in a class the caption allows (module docstring); higher is better.

    ``update(logits (N, K), label_sets)``; states are integer counts reduced with ``sum`` (DDP-safe).

    Args:
        num_classes: The dataset's number of classes K (0: not checked). real_split: The reference split.
    """

    input_kind = "joint"
    higher_is_better = True
    full_state_update = False
    #: The source of the pairs: the model's joint samples (``joint-real``: the real reference pairs).
    source: ClassVar[rq.ImageSource] = "joint"

    def __init__(self, num_classes: int = 0, real_split: str = "test", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.real_split = num_classes, real_split
        #: The datamodule's validity rule of the captions fed (set by :meth:`feed`).
        self.rule = "as the label sets given"
        for name in ("coherent", "valid", "total"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    @classmethod
    def build(cls, ctx: MetricContext) -> JointCoherence:
        return cls(num_classes=ctx.num_classes, real_split=ctx.real_split)

    def requests(self) -> tuple[rq.Request, ...]:
        return rq.ClassifierLogits(self.source), rq.CaptionLabelSets(self.source)

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        logits_request, labels_request = self.requests()
        answer: CaptionLabels = inputs[labels_request]
        self.rule = answer.rule
        self.update(inputs[logits_request], answer.label_sets)

    def update(self, logits: torch.Tensor, label_sets: Sequence[Collection[int] | None]) -> None:  # (N, K), N sets
        if self.num_classes and logits.ndim == 2 and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{self._name()}: the classifier backbone predicts {logits.shape[1]} classes but the dataset has "
                f"{self.num_classes}; use a classifier trained on this dataset's labels"
            )
        coherent, valid, total = joint_coherence_counts(logits.detach(), label_sets)
        self.coherent += coherent
        self.valid += valid
        self.total += total

    def compute(self) -> torch.Tensor:
        if int(self.total) == 0:
            raise ValueError(f"{self._name()} has no (image, caption) pairs (update was never called with data)")
        return self.coherent.double() / self.total.double()

    def values(self, name: str) -> dict[str, Estimate]:
        """``{name: coherent fraction}`` and, for generated pairs, the fraction of valid captions as a second row
        (``valid-captions``): it is an outcome of the run, so it is a value, not part of the protocol (a protocol
        that varied with it would mark every run as scored under another protocol)."""
        rows = {name: Estimate(float(self.compute()))}
        if self.source == "joint":
            rows[name.replace("joint-coherence", "valid-captions", 1)] = Estimate(
                float(self.valid.double() / self.total.double()))
        return rows

    def protocol(self) -> str:
        return (f"{self._pairs()},valid={self.rule},"
                "coherent=valid caption and classifier argmax in its labels,valid-captions=fraction of valid captions")

    def _pairs(self) -> str:
        return f"samples={int(self.total)},pairs=prior draws decoded to mean image and argmax caption tokens"

    def _name(self) -> str:
        return getattr(type(self), "registry_name", type(self).__name__)


@METRICS.register("joint-coherence-real")
class JointCoherenceReal(JointCoherence):
    """``joint-coherence`` of the real (image, caption) pairs of the reference split: its ceiling under the same
    classifier backbone (at least the classifier's accuracy on those images); higher is better."""

    on_reference_data: ClassVar[bool] = True
    source: ClassVar[rq.ImageSource] = "joint-real"

    def _pairs(self) -> str:
        return f"pairs={int(self.total)} real images of {self.real_split} with their captions"
