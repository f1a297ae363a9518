"""What a metric asks the evaluator for: requests, answered by providers (:mod:`bench.providers`).

A registered metric declares the inputs it needs as a tuple of requests (``BenchMetric.requests``). The evaluator
collects the requests of every metric of a unit, answers each distinct one once (so a feature set is computed once
per unit and shared by every metric that asks for it) and hands the answers to ``metric.feed(inputs)``, a mapping
from request to value.

A request names *what*, never *which backbone*: a feature request is answered by the metric's feature backbone,
which is the track's ``eval.backbone`` unless the metric is named ``<metric>@<backbone>`` in the track
(:func:`split_metric_name`), and the answers are memoized by (request, backbone).

The sources of images:

* ``real``: the reference split (``eval.real_split``) of the datamodule, or ``--real`` of ``bench eval``;
* ``fake``: ``n_fake`` unconditional samples of the model (``ImageGenerator.sample``), or ``--fake``;
* ``train``: the datamodule's training split (memorization / authenticity metrics), or ``--train``;
* ``conditional``: one image generated from each caption of the first ``n_fake`` reference examples
  (``TextToImageGenerator.sample_from_text``);
* ``conditional-real``: the real images of those same reference examples (ceiling rows such as
  ``clip-score-real``);
* ``joint``: ``n_fake`` unconditional samples of *both* modalities, an image and a caption from each prior draw
  (``model.sample_joint(n, generator)``, e.g. the multimodal VAEs), for ``joint-coherence``;
* ``joint-real``: the real (image, caption) pairs of the whole reference split (the ceiling ``joint-coherence-real``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ImageSource = Literal["real", "fake", "train", "conditional", "conditional-real", "joint", "joint-real"]


@dataclass(frozen=True)
class Request:
    """Base of every request (a hashable value naming one input)."""


@dataclass(frozen=True)
class Features(Request):
    """(N, D) float32 features of the metric's feature backbone on the images of ``source``."""

    source: ImageSource


@dataclass(frozen=True)
class Logits(Request):
    """(N, K) class logits of the metric's feature backbone (its classification head) on ``source``'s images;
    computed in the same forward pass as :class:`Features` of that source."""

    source: ImageSource


@dataclass(frozen=True)
class Labels(Request):
    """(N,) long class labels of ``source``'s images (``real``, ``train``, ``conditional-real``, and
    ``conditional``: the labels of the captions' examples)."""

    source: ImageSource


@dataclass(frozen=True)
class ClassifierLogits(Request):
    """(N, K) logits of the track's classifier backbone (``eval.classifier_backbone``) on ``source``'s images."""

    source: ImageSource


@dataclass(frozen=True)
class CaptionSimilarity(Request):
    """``(cosines (N,), n_truncated)``: image–caption cosine similarities of the track's image–text backbone
    (``eval.clip_backbone``) between ``source``'s images (``conditional`` or ``conditional-real``) and their
    captions; ``n_truncated`` captions were longer than the backbone's context."""

    source: ImageSource


@dataclass(frozen=True)
class CaptionLabelSets(Request):
    """Per caption of ``source`` (``joint``: the captions decoded with the samples; ``joint-real``: the reference
    split's), the class labels it allows (a frozenset) or None where it is no valid caption of the datamodule: the
    datamodule's ``caption_label_sets(text_ids)`` (e.g. :meth:`datamodules.captioned_digits.
    CaptionedDigitsDataModule.caption_label_sets`); a list of N entries, in the order of ``source``'s images."""

    source: ImageSource


@dataclass(frozen=True)
class Reconstructions(Request):
    """The autoencoder's reconstructions of the reference split: a list of ``(recon (B, C, H, W), target (B, C, H,
    W))`` batches in [0, 1]."""


@dataclass(frozen=True)
class ClassifierPredictions(Request):
    """A classifier model's ``(logits (B, K), labels (B,))`` batches on the reference split, under the corruption
    ``condition`` (``"clean"`` or a name of :func:`bench.metrics.robustness.conditions`)."""

    condition: str = "clean"


@dataclass(frozen=True)
class Likelihoods(Request):
    """``(nll (N,), num_dims)``: the likelihood model's importance-sampled NLL per image (nats) of the first
    ``eval.nll_images`` reference images with ``num_samples`` posterior samples, and the dimension count of its
    likelihood (bits/dim)."""

    num_samples: int


def split_metric_name(entry: str) -> tuple[str, str | None]:
    """``"fid@dinov2-vits14"`` → ``("fid", "dinov2-vits14")``; ``"fid"`` → ``("fid", None)`` (the track's
    backbone)."""
    name, sep, backbone = entry.partition("@")
    return name, (backbone if sep else None)


#: The ``eval`` field naming the backbone that answers a request type (feature requests: ``eval.backbone`` or the
#: metric's ``@backbone``).
BACKBONE_FIELD_OF_REQUEST: dict[type[Request], str] = {
    CaptionSimilarity: "clip_backbone", ClassifierLogits: "classifier_backbone",
}


def backbone_fields(requests: tuple[Request, ...]) -> set[str]:
    """The ``eval`` backbone fields (``clip_backbone``, ``classifier_backbone``) that ``requests`` need."""
    return {BACKBONE_FIELD_OF_REQUEST[type(r)] for r in requests if type(r) in BACKBONE_FIELD_OF_REQUEST}


def needs_feature_backbone(requests: tuple[Request, ...]) -> bool:
    """Whether ``requests`` are answered (partly) by a feature backbone."""
    return any(isinstance(r, (Features, Logits)) for r in requests)
