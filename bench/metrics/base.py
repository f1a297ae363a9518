"""What every registered metric declares, so the evaluator can feed it without knowing its name.

A registered metric is a torchmetrics :class:`~torchmetrics.Metric` that also mixes in :class:`BenchMetric`:

* ``requests()`` says what it needs (:mod:`bench.metrics.requests`), ``feed(inputs)`` takes the answers and
  ``values(name)`` returns its result rows with their spread (:class:`Estimate`); a metric that only sets
  ``input_kind`` gets the requests and the feeding of that kind (:data:`REQUESTS_OF_KIND`, :meth:`BenchMetric.feed`);
* ``input_kind`` says what ``update`` takes:
  - ``"features"``: ``update(features (N, D), real: bool)``, backbone features of real or generated images;
  - ``"logits"``: ``update(logits (N, K))``, backbone class logits of generated images (Inception Score);
  - ``"reconstruction"``: ``update(preds (N, C, H, W), target (N, C, H, W))`` in [0, 1];
  - ``"classification"``: ``update(logits (N, K), target (N,))``;
  - ``"likelihood"``: ``update(nll (N,))``, an autoencoder's importance-sampled NLL per image in nats
    (``model.nll(x, num_samples=metric.importance_samples, generator=...)``);
  - ``"robustness"``: ``update(condition, logits (N, K), target (N,))``, a classifier's logits on the test split
    under each corruption condition of :func:`bench.metrics.robustness.conditions`;
  - ``"conditional_features"``: ``update(features (N, D), real: bool)`` like ``"features"``, but the generated images
    are a :class:`~models.base.TextToImageGenerator`'s images drawn from the reference split's captions (one per
    caption of the first ``n_fake`` reference examples), e.g. ``cross-fid``;
  - ``"image_text"``: ``update(cosine (N,), num_truncated=0)``, image–caption cosine similarities from the track's
    image–text backbone (``eval.clip_backbone``) of those caption-conditioned images with their caption strings;
  - ``"conditional_logits"``: ``update(logits (N, K), target (N,))``, the logits of the track's classifier backbone
    (``eval.classifier_backbone``) on those images, against the labels of the captions' reference examples.
  - ``"joint"``: ``update(logits (N, K), label_sets)``, the classifier backbone's logits on a model's
    unconditional images (``sample_joint``) and, per image, the labels its jointly sampled caption allows (None:
    not a valid caption), e.g. ``joint-coherence``.
* ``on_reference_data``: True for a reference row scored on the *real* reference examples instead of the model's
  generations (the same images and captions for every model: the ceiling, e.g. ``clip-score-real``).
* ``compute()`` returns a scalar tensor, or a dict of named scalars (several result rows, e.g. precision and
  recall; a dict metric's ``higher_is_better`` applies to every value);
* ``build(ctx)`` makes an instance from the facts of one evaluation (:class:`MetricContext`);
* ``protocol()`` states every choice that changes the number, for the result row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

from bench.metrics import requests as rq

InputKind = Literal[
    "features", "logits", "reconstruction", "classification", "likelihood", "robustness",
    "conditional_features", "image_text", "conditional_logits", "joint",
]
@dataclass(frozen=True)
class MetricContext:
    """Facts about one evaluation that metrics may need to configure themselves.

    Attributes:
        image_shape: (C, H, W) of the dataset's images.
        num_classes: Number of classes (classification metrics).
        num_features: Backbone feature dimension (feature metrics).
        seed: Seed for any randomness inside a metric (KID subsets).
        kid_subsets: Number of KID subsets.
        kid_subset_size: Size of each KID subset (clamped to the sample sizes, with a warning).
        is_splits: Number of Inception Score splits.
        importance_samples: Importance samples per image of likelihood bounds (``nll-bpd``).
        modalities: The dataset's input modalities (robustness conditions).
        real_split: The reference split (conditional metrics state whose captions they were conditioned on).
    """

    image_shape: tuple[int, int, int] = (1, 8, 8)
    num_classes: int = 0
    num_features: int = 0
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    importance_samples: int = 64
    modalities: tuple[str, ...] = ("image",)
    real_split: str = "test"


def probe_requests(metric_class: type[BenchMetric]) -> tuple[rq.Request, ...]:
    """The requests of ``metric_class`` built on a minimal context (what it asks for, before any data is known:
    for applicability and preflight checks; preflight then builds every metric on the real context)."""
    return metric_class.build(MetricContext(num_classes=2, num_features=2)).requests()


class Estimate(NamedTuple):
    """One value of a metric, with the estimator's own spread where it has one (KID over its subsets, IS over its
    splits; None otherwise). Both reach the result rows (``value``, ``value_std``)."""

    value: float
    std: float | None = None


#: The requests of each built-in input kind (see the module docstring), for metrics that declare a kind only.
REQUESTS_OF_KIND: dict[str, tuple[rq.Request, ...]] = {
    "features": (rq.Features("real"), rq.Features("fake")),
    "logits": (rq.Logits("fake"),),
    "reconstruction": (rq.Reconstructions(),),
    "classification": (rq.ClassifierPredictions("clean"),),
    "conditional_features": (rq.Features("real"), rq.Features("conditional")),
}


class BenchMetric:
    """Mixin declaring how the evaluator feeds a metric. See the module docstring.

    The evaluator asks :meth:`requests` what the metric needs, answers every request once per unit (shared with
    the other metrics asking the same; :mod:`bench.providers`), calls :meth:`feed` with the answers, then
    :meth:`values` for the result rows.
    """

    registry_name: ClassVar[str]
    input_kind: ClassVar[InputKind]
    higher_is_better: ClassVar[bool | None]
    #: Scored on the real reference examples rather than on the model's generations (a ceiling row).
    on_reference_data: ClassVar[bool] = False

    @classmethod
    def build(cls, ctx: MetricContext) -> BenchMetric:
        """An instance configured for one evaluation."""
        return cls()

    def protocol(self) -> str:
        """Every choice that changes the value, as ``key=value`` pairs (called after :meth:`values`, so it states
        what was used, e.g. a clamped subset size)."""
        return ""

    def requests(self) -> tuple[rq.Request, ...]:
        """The inputs this metric needs (:mod:`bench.metrics.requests`); by default those of its input kind."""
        return REQUESTS_OF_KIND[self.input_kind]

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        """Updates the metric's state from the answers to its :meth:`requests`; by default as its input kind
        says (``update(features, real=...)`` for ``features``, ``update(logits)`` for ``logits``, ...)."""
        kind = self.input_kind
        if kind in ("features", "conditional_features"):
            self.update(inputs[rq.Features("real")], real=True)
            self.update(inputs[rq.Features("fake" if kind == "features" else "conditional")], real=False)
        elif kind == "logits":
            self.update(inputs[rq.Logits("fake")])
        elif kind == "reconstruction":
            for recon, target in inputs[rq.Reconstructions()]:
                self.update(recon, target)
        elif kind == "classification":
            for logits, label in inputs[rq.ClassifierPredictions("clean")]:
                self.update(logits, label)
        else:
            raise NotImplementedError(f"metric {type(self).__name__} must define feed() for input kind {kind!r}")

    def values(self, name: str) -> dict[str, Estimate]:
        """The metric's result rows by name: ``{name: Estimate}`` for a scalar ``compute()``, one entry per key for
        a dict (e.g. precision and recall). Metrics whose estimator has a spread override this to return it."""
        result = self.compute()
        items = result.items() if isinstance(result, dict) else [(name, result)]
        return {key: value if isinstance(value, Estimate) else Estimate(float(value)) for key, value in items}
