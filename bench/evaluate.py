"""One evaluator for ``bench run`` and ``bench eval``: metrics declare requests, providers answer them.

Each registered metric says what it needs (:meth:`~bench.metrics.base.BenchMetric.requests`: features of the real
or generated images, class logits, reconstructions, likelihoods, caption similarities, ...;
:mod:`bench.metrics.requests`). For one unit the evaluator builds every metric of the track, keeps those whose
requests the subject can answer (a metric applies to a model when every request does: reconstruction needs an
:class:`~models.base.AutoEncoder`, ``cross-fid`` a :class:`~models.base.TextToImageGenerator`, ...; the evaluator
never looks at model names), answers all their requests at once through :class:`bench.providers.UnitInputs` —
each feature set computed once per unit and shared — feeds each metric and turns its values into
:class:`Score` rows.

A track's metric entry ``<metric>@<backbone>`` (e.g. ``fid@dinov2-vits14``) scores the metric on that backbone
instead of the track's ``eval.backbone``; its rows are named with the same suffix (``fid@dinov2-vits14``,
``precision@dinov2-vits14``) and carry that backbone in the ``backbone`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bench.backbones.base import FeatureBackbone
from bench.metrics import METRICS, BenchMetric, MetricContext
from bench.metrics.base import probe_requests
from bench.metrics import cross_modal  # noqa: F401  (registration of the conditional metrics)
from bench.metrics import requests as rq
from bench.metrics.requests import split_metric_name
from bench.providers import ImageSetSubject, ModelSubject, Subject, UnitInputs, generate_from_captions
from bench.spec import EvalSpec
from datamodules.base import BenchDataModule
from models.base import BenchModule

__all__ = ["Evaluator", "ImageSetSubject", "Score", "applicable_metrics", "generate_from_captions", "metric_context"]

#: Sources whose images are real data (their count is a row's ``n_real``).
_REAL_SOURCES = ("real", "train", "conditional-real", "joint-real")
#: Sources whose images are generated (their count is a row's ``n_fake``).
_FAKE_SOURCES = ("fake", "conditional", "joint")


@dataclass(frozen=True)
class Score:
    """One metric value with everything needed to interpret it.

    Attributes:
        metric: Row name: the metric's value name, with ``@<backbone>`` for a metric named so in the track.
        value: The number. value_std: The estimator's own spread (KID over subsets, IS over splits), else None.
        higher_is_better: Its direction.
        protocol: Metric-specific choices (``key=value`` pairs). split: The real/reference split.
        n_real: Real samples used. n_fake: Generated samples used (generation metrics only).
        backbone, backbone_sha256, resize: The network that scored the images (feature metrics: the feature
            backbone; ``clip-score*``: the image–text backbone; ``coherence*``: the classifier backbone).
    """

    metric: str
    value: float
    higher_is_better: bool
    protocol: str
    split: str
    n_real: int | None
    n_fake: int | None = None
    backbone: str = ""
    backbone_sha256: str = ""
    resize: str = ""
    value_std: float | None = None


def metric_context(spec: EvalSpec, data_spec: Any, seed: int, backbone: FeatureBackbone | None) -> MetricContext:
    """The facts a metric configures itself from (:class:`~bench.metrics.base.MetricContext`)."""
    return MetricContext(
        image_shape=data_spec.image_shape,
        num_classes=data_spec.num_classes,
        num_features=backbone.num_features if backbone is not None else 0,
        seed=seed,
        kid_subsets=spec.kid_subsets,
        kid_subset_size=spec.kid_subset_size,
        is_splits=spec.is_splits,
        importance_samples=spec.nll_samples,
        modalities=data_spec.modalities,
        real_split=spec.real_split,
    )


def applicable_metrics(model: BenchModule, metric_names: list[str] | tuple[str, ...]) -> list[str]:
    """The entries of ``metric_names`` whose requests ``model``'s family can answer (e.g. the caption-conditioned
    metrics only apply to :class:`~models.base.TextToImageGenerator` models)."""
    subject = ModelSubject(model, None, EvalSpec(), 0)
    return [m for m in metric_names
            if all(subject.can_answer(r) for r in probe_requests(METRICS.get(split_metric_name(m)[0])))]


class Evaluator:
    """Computes one track's metrics for trained models (:meth:`evaluate`) or image sets (:meth:`score`).

    Args:
        spec: The track's evaluation settings.
        metrics: Metric entries of the track (``name`` or ``name@backbone``).
        backbone: The track's feature backbone (``eval.backbone``; None if no metric needs one).
        cache_dir: Where real-data features are cached (None: the default cache).
        console: Where progress bars are drawn (None: no bars).
        clip_backbone: Image–text backbone (``eval.clip_backbone``) for caption similarities.
        classifier_backbone: Classifier backbone (``eval.classifier_backbone``) for classifier logits.
        backbones: The backbones of ``name@backbone`` entries, by backbone name.
    """

    def __init__(
        self,
        spec: EvalSpec,
        metrics: tuple[str, ...],
        backbone: FeatureBackbone | None,
        cache_dir: Path | None = None,
        console: Console | None = None,
        clip_backbone: Any = None,
        classifier_backbone: Any = None,
        backbones: dict[str, FeatureBackbone] | None = None,
    ) -> None:
        self.spec, self.metrics, self.backbone = spec, tuple(metrics), backbone
        self.cache_dir, self.console = cache_dir, console
        self.clip_backbone, self.classifier_backbone = clip_backbone, classifier_backbone
        self.backbones = dict(backbones or {})
        #: Outputs on real reference examples (the same for every model and seed of the track).
        self._shared: dict[Any, Any] = {}
        #: Called with (backbone, number of images) for every backbone pass (tests count forwards).
        self.counter: Any = None

    def backbone_of(self, entry: str) -> FeatureBackbone | None:
        """The feature backbone of a metric entry: ``@name``'s, else the track's."""
        _, name = split_metric_name(entry)
        if name is None:
            return self.backbone
        if name not in self.backbones:
            raise ValueError(f"metric {entry!r}: backbone {name!r} was not built")
        return self.backbones[name]

    def build_metrics(self, data_spec: Any, seed: int) -> dict[str, BenchMetric]:
        """Every metric of the track, built for one evaluation (also run by preflight, before any training)."""
        out: dict[str, BenchMetric] = {}
        for entry in self.metrics:
            name, _ = split_metric_name(entry)
            metric = METRICS.get(name).build(metric_context(self.spec, data_spec, seed, self.backbone_of(entry)))
            # Scoring runs in one process (rank 0 of a DDP run holds every sample): never all-gather the states
            # with other ranks, which are already training the next unit.
            metric.sync_on_compute = metric._to_sync = False
            out[entry] = metric
        return out

    @torch.no_grad()
    def evaluate(self, model: BenchModule, dm: BenchDataModule, seed: int) -> list[Score]:
        """Scores ``model`` on ``dm``'s reference split; randomness (sampling, KID subsets) follows ``seed``."""
        model.eval()
        subject = ModelSubject(model, dm, self.spec, seed)
        n_split = len(subject.tensors(self.spec.real_split)["label"])
        return self.score(subject, dm.data_spec(), seed, n_split)

    @torch.no_grad()
    def score(self, subject: Subject, data_spec: Any, seed: int, n_split: int | None = None,
              check: Callable[[UnitInputs], None] | None = None) -> list[Score]:
        """Scores ``subject`` with every applicable metric of the track, in the track's order.

        Args:
            subject: A model on its datamodule, or image sets. data_spec: The data's facts (image shape, classes).
            seed: Seeds metric randomness (KID subsets, IS shuffle). n_split: Size of the reference split (the
                ``n_real`` of rows with no real input of their own).
            check: Called with the answered inputs before any metric sees them (``bench eval`` refuses
                non-finite features there).
        """
        metrics = {e: m for e, m in self.build_metrics(data_spec, seed).items()
                   if all(subject.can_answer(r) for r in m.requests())}
        inputs = UnitInputs(subject, self.spec, self.clip_backbone, self.classifier_backbone, self.cache_dir,
                            self.console, self._shared, self.counter)
        inputs.answer([(r, self._backbone_for(e, r)) for e, m in metrics.items() for r in m.requests()])
        if check is not None:
            check(inputs)
        scores: list[Score] = []
        for entry, metric in metrics.items():
            answers = {r: inputs.get(r, self._backbone_for(entry, r)) for r in metric.requests()}
            metric.feed(answers)
            scores += self._scores(entry, metric, answers, n_split)
        return scores

    def _backbone_for(self, entry: str, request: rq.Request) -> FeatureBackbone | None:
        return self.backbone_of(entry) if isinstance(request, (rq.Features, rq.Logits)) else None

    def _scores(self, entry: str, metric: BenchMetric, answers: dict[rq.Request, Any],
                n_split: int | None) -> list[Score]:
        """One Score per value of ``metric`` (:meth:`~bench.metrics.base.BenchMetric.values`)."""
        name, suffix = split_metric_name(entry)
        values = metric.values(name)
        requests = list(answers)
        extra: list[str] = []
        backbone: Any = None
        if any(isinstance(r, (rq.Features, rq.Logits)) for r in requests):
            backbone = self.backbone_of(entry)
            extra.append(f"backbone_version={backbone.forward_version}")
        if any(isinstance(r, rq.CaptionSimilarity) for r in requests):
            backbone = backbone or self.clip_backbone
            extra.append(f"clip_backbone={self.clip_backbone.registry_name}")
        if any(isinstance(r, rq.ClassifierLogits) for r in requests):
            clf = self.classifier_backbone
            backbone = backbone or clf
            extra.append(f"classifier={clf.registry_name},classifier_sha256={clf.weights_sha256}")
        protocol = ",".join(p for p in (metric.protocol(), *extra) if p)
        n_real, n_fake = _counts(answers)
        return [
            Score(
                metric=key if suffix is None else f"{key}@{suffix}",
                value=float(estimate.value),
                value_std=None if estimate.std is None else float(estimate.std),
                higher_is_better=bool(metric.higher_is_better),
                protocol=protocol,
                split=self.spec.real_split,
                n_real=n_real if n_real is not None else n_split,
                n_fake=n_fake,
                backbone=getattr(backbone, "registry_name", "") if backbone is not None else "",
                backbone_sha256=getattr(backbone, "weights_sha256", "") if backbone is not None else "",
                resize=getattr(backbone, "resize", "") if backbone is not None else "",
            )
            for key, estimate in values.items()
        ]


def _counts(answers: dict[rq.Request, Any]) -> tuple[int | None, int | None]:
    """(n_real, n_fake) of a metric's inputs: the number of real and of generated images it was given."""
    n_real = n_fake = None
    for request, value in answers.items():
        source = getattr(request, "source", None)
        count = _length(value)
        if count is None:
            continue
        # labels and captions are of real examples, also when they conditioned the generations
        real = source in _REAL_SOURCES or isinstance(request, (rq.Likelihoods, rq.Reconstructions, rq.Labels,
                                                               rq.CaptionSimilarity))
        if real:
            n_real = count if n_real is None else max(n_real, count)
        if source in _FAKE_SOURCES and not isinstance(request, rq.Labels):
            n_fake = count if n_fake is None else max(n_fake, count)
    return n_real, n_fake


def _length(value: Any) -> int | None:
    if isinstance(value, torch.Tensor):
        return len(value)
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):  # (cosines, n_truncated)
        return len(value[0])
    nll = getattr(value, "nll", None)
    if nll is not None:
        return sum(len(x) for x in nll)
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # [(outputs, targets)] batches
        return sum(len(batch[1]) for batch in value)
    return None
