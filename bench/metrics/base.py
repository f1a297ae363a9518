"""What every registered metric declares, so the evaluator can feed it without knowing its name.

A registered metric is a torchmetrics :class:`~torchmetrics.Metric` that also mixes in :class:`BenchMetric`:

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
* ``on_reference_data``: True for a reference row scored on the *real* reference examples instead of the model's
  generations (the same images and captions for every model: the ceiling, e.g. ``clip-score-real``).
* ``compute()`` returns a scalar tensor, or a dict of named scalars (several result rows, e.g. precision and
  recall; a dict metric's ``higher_is_better`` applies to every value);
* ``build(ctx)`` makes an instance from the facts of one evaluation (:class:`MetricContext`);
* ``protocol()`` states every choice that changes the number, for the result row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

InputKind = Literal[
    "features", "logits", "reconstruction", "classification", "likelihood", "robustness",
    "conditional_features", "image_text", "conditional_logits",
]
#: Input kinds computed from a feature backbone's outputs on unconditional samples (and real images).
BACKBONE_INPUT_KINDS: tuple[str, ...] = ("features", "logits")
#: Input kinds computed from images generated from the reference split's captions (text-to-image models).
CONDITIONAL_INPUT_KINDS: tuple[str, ...] = ("conditional_features", "image_text", "conditional_logits")
#: Input kinds that need the track's feature backbone (``eval.backbone``).
FEATURE_BACKBONE_INPUT_KINDS: tuple[str, ...] = (*BACKBONE_INPUT_KINDS, "conditional_features")
#: The ``EvalSpec`` field naming the extra backbone an input kind is scored with.
BACKBONE_FIELD_OF_KIND: dict[str, str] = {"image_text": "clip_backbone", "conditional_logits": "classifier_backbone"}


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


class BenchMetric:
    """Mixin declaring how the evaluator feeds a metric. See the module docstring."""

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
        """Every choice that changes the value, as ``key=value`` pairs."""
        return ""
