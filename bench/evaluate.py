"""Scores a trained model on a datamodule with the requested metrics.

Which metrics apply to a model follows from its family base class (see ``models/base.py``) and the metric's
``input_kind``: feature and logit metrics need an :class:`~models.base.ImageGenerator`, likelihood metrics a
:class:`~models.base.LikelihoodModel`, reconstruction metrics an :class:`~models.base.AutoEncoder`, classification
metrics a :class:`~models.base.Classifier`, and the caption-conditioned metrics (``cross-fid``, ``clip-score``,
``coherence``, ...; see :mod:`bench.metrics.cross_modal`) a :class:`~models.base.TextToImageGenerator`. The
evaluator never looks at model names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from bench.backbones.base import FeatureBackbone
from bench.corruptions import add_noise, drop_modality
from bench.features import cached_real_features, extract_features, iter_batches, progress, real_cache_key, to_uint8
from bench.metrics import METRICS, BenchMetric, MetricContext
from bench.metrics import cross_modal  # noqa: F401  (registration of the conditional metrics)
from bench.metrics.base import BACKBONE_INPUT_KINDS, CONDITIONAL_INPUT_KINDS
from bench.metrics.cross_modal import (
    ImageClassifierBackbone, ImageTextScorer, caption_similarities, classifier_logits,
)
from bench.metrics.robustness import conditions
from bench.spec import EvalSpec
from datamodules.base import BenchDataModule
from models.base import AutoEncoder, BenchModule, Classifier, ImageGenerator, LikelihoodModel, TextToImageGenerator

_REQUIRED_BASE = {
    "features": ImageGenerator,
    "logits": ImageGenerator,
    "reconstruction": AutoEncoder,
    "classification": Classifier,
    "likelihood": LikelihoodModel,
    "robustness": Classifier,
    "conditional_features": TextToImageGenerator,
    "image_text": TextToImageGenerator,
    "conditional_logits": TextToImageGenerator,
}


@dataclass(frozen=True)
class Score:
    """One metric value with everything needed to interpret it.

    Attributes:
        metric: Registered metric name. value: The number. higher_is_better: Its direction.
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
    n_real: int
    n_fake: int | None = None
    backbone: str = ""
    backbone_sha256: str = ""
    resize: str = ""


def applicable_metrics(model: BenchModule, metric_names: list[str] | tuple[str, ...]) -> list[str]:
    """The metrics among ``metric_names`` that ``model``'s family can be scored on (e.g. the caption-conditioned
    metrics only apply to :class:`~models.base.TextToImageGenerator` models)."""
    bases = [(m, _REQUIRED_BASE.get(METRICS.get(m).input_kind)) for m in metric_names]
    return [m for m, base in bases if base is not None and isinstance(model, base)]


def _sample_batches(model: ImageGenerator, n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, n, batch_size):
        yield model.sample(min(batch_size, n - i), generator=gen).float().cpu()


@torch.no_grad()
def generate_from_captions(
    model: TextToImageGenerator, text: torch.Tensor, batch_size: int, seed: int, console: Console | None = None
) -> torch.Tensor:
    """One image per caption, drawn with a CPU generator seeded with ``seed``, quantized like every feature path.

    Args:
        model: The text-to-image model (in eval mode). text: (N, L) long caption tokens (0 = padding).
        batch_size: Captions per ``sample_from_text`` call. seed: The run's seed. console: Where the bar is drawn.

    Returns:
        (N, C, H, W) uint8 images on the CPU (:func:`bench.features.to_uint8` of the model's [0, 1] output).
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    with progress(console) as bar:
        task = bar.add_task("sampling from captions", total=len(text))
        for tokens in iter_batches(text, batch_size):
            out.append(to_uint8(model.sample_from_text(tokens.to(model.device), generator=gen).float().cpu()))
            bar.advance(task, len(tokens))
    return torch.cat(out)


def caption_strings(dm: BenchDataModule, split: str) -> list[str]:
    """The caption strings of ``split`` in ``split_tensors`` order (``dm.caption_strings``).

    Raises:
        ValueError: If the datamodule has no caption strings.
    """
    if not callable(getattr(dm, "caption_strings", None)):
        raise ValueError(
            f"datamodule {dm.registry_name!r} has no caption_strings(split); clip-score needs the caption strings"
        )
    return list(dm.caption_strings(split))


def backbone_version_protocol(backbone: FeatureBackbone) -> str:
    """The protocol entry naming the forward version of the feature backbone that scored a metric."""
    return f"backbone_version={backbone.forward_version}"


class Evaluator:
    """Computes one track's metrics for trained models.

    Args:
        spec: The track's evaluation settings.
        metrics: Metric names requested by the track.
        backbone: Feature network for feature metrics (None if the track has none).
        cache_dir: Where real-data features are cached (None: the default cache).
        console: Where progress bars are drawn (None: no bars).
        clip_backbone: Image–text backbone (``eval.clip_backbone``) for ``clip-score*`` (None if none is needed).
        classifier_backbone: Classifier backbone (``eval.classifier_backbone``) for ``coherence*``.
    """

    def __init__(
        self,
        spec: EvalSpec,
        metrics: tuple[str, ...],
        backbone: FeatureBackbone | None,
        cache_dir: Path | None = None,
        console: Console | None = None,
        clip_backbone: ImageTextScorer | None = None,
        classifier_backbone: ImageClassifierBackbone | None = None,
    ) -> None:
        self.spec, self.metrics, self.backbone = spec, metrics, backbone
        self.cache_dir, self.console = cache_dir, console
        self.clip_backbone, self.classifier_backbone = clip_backbone, classifier_backbone
        #: Backbone outputs on the real reference examples (the same for every model and seed), by what made them.
        self._reference_outputs: dict[tuple[str, ...], tuple[torch.Tensor, int]] = {}

    def conditional_count(self, n_reference: int) -> int:
        """How many reference examples conditional metrics use: the first ``n_fake`` (all when fewer, or when
        ``n_fake`` is 0)."""
        return min(self.spec.n_fake, n_reference) if self.spec.n_fake > 0 else n_reference

    def real_features(self, dm: BenchDataModule) -> torch.Tensor:
        """(N, D) backbone features of the reference split, from the cache when present."""
        assert self.backbone is not None
        images = dm.split_tensors(self.spec.real_split)["image"]
        key = real_cache_key(dm.identity(), self.spec.real_split, self.backbone)
        compute = lambda: extract_features(  # noqa: E731
            self.backbone, iter_batches(images, self.spec.batch_size), len(images), "real features", self.console
        )
        feats, _ = cached_real_features(key, compute, self.cache_dir, source_images=images)
        return feats

    @torch.no_grad()
    def evaluate(self, model: BenchModule, dm: BenchDataModule, seed: int) -> list[Score]:
        """Scores ``model`` on ``dm``'s reference split; randomness (sampling, KID subsets) follows ``seed``."""
        names = applicable_metrics(model, self.metrics)
        data_spec = dm.data_spec()
        ctx = MetricContext(
            image_shape=data_spec.image_shape,
            num_classes=data_spec.num_classes,
            num_features=self.backbone.num_features if self.backbone else 0,
            seed=seed,
            kid_subsets=self.spec.kid_subsets,
            kid_subset_size=self.spec.kid_subset_size,
            is_splits=self.spec.is_splits,
            importance_samples=self.spec.nll_samples,
            modalities=data_spec.modalities,
            real_split=self.spec.real_split,
        )
        metrics: dict[str, BenchMetric] = {n: METRICS.get(n).build(ctx) for n in names}
        for metric in metrics.values():
            # Scoring runs in one process (rank 0 of a DDP run holds every sample): never all-gather the states
            # with other ranks, which are already training the next unit.
            metric.sync_on_compute = metric._to_sync = False
        by_kind: dict[str, list[str]] = {}
        for n in names:
            by_kind.setdefault(METRICS.get(n).input_kind, []).append(n)
        model.eval()
        split = self.spec.real_split
        tensors = dm.split_tensors(split)
        n_real = len(tensors["label"])
        scores: list[Score] = []

        if any(kind in by_kind for kind in BACKBONE_INPUT_KINDS):
            assert isinstance(model, ImageGenerator) and self.backbone is not None
            with_logits = "logits" in by_kind
            fake = extract_features(
                self.backbone,
                _sample_batches(model, self.spec.n_fake, self.spec.batch_size, seed),
                self.spec.n_fake,
                "sampling + features",
                self.console,
                with_logits=with_logits,
            )
            fake, fake_logits = fake if with_logits else (fake, None)
            extra = {
                "n_fake": len(fake),
                "backbone": self.backbone.registry_name,
                "backbone_sha256": self.backbone.weights_sha256,
                "resize": self.backbone.resize,
            }
            version = backbone_version_protocol(self.backbone)
            if "features" in by_kind:
                real = self.real_features(dm)
                for n in by_kind["features"]:
                    metrics[n].update(real, real=True)
                    metrics[n].update(fake, real=False)
                scores += [sc for n in by_kind["features"]
                           for sc in self._scores(n, metrics[n], split, len(real), version, **extra)]
            for n in by_kind.get("logits", []):
                metrics[n].update(fake_logits)
                scores += self._scores(n, metrics[n], split, n_real, version, **extra)

        if any(kind in by_kind for kind in CONDITIONAL_INPUT_KINDS):
            assert isinstance(model, TextToImageGenerator)
            scores += self._conditional_scores(model, dm, seed, metrics, by_kind)

        loader = dm.dataloader(split, batch_size=self.spec.batch_size)
        if "reconstruction" in by_kind:
            assert isinstance(model, AutoEncoder)
            for batch in loader:
                recon = model.reconstruct_batch({k: v.to(model.device) for k, v in batch.items()})
                for n in by_kind["reconstruction"]:
                    metrics[n].update(recon.cpu(), batch["image"])
            scores += [sc for n in by_kind["reconstruction"] for sc in self._scores(n, metrics[n], split, n_real)]

        if "likelihood" in by_kind:
            assert isinstance(model, LikelihoodModel)
            for n in by_kind["likelihood"]:
                metrics[n].likelihood, metrics[n].bound = model.likelihood, model.nll_bound
            gen = torch.Generator().manual_seed(seed)  # posterior samples of the importance-sampled bound
            images = tensors["image"][: self.spec.nll_images or None]
            for x in iter_batches(images, self.spec.batch_size):
                for n in by_kind["likelihood"]:
                    nll = model.nll(x.to(model.device), num_samples=metrics[n].importance_samples, generator=gen)
                    metrics[n].update(nll.cpu(), num_dims=model.likelihood_dims())
            scores += [sc for n in by_kind["likelihood"] for sc in self._scores(n, metrics[n], split, len(images))]

        if "classification" in by_kind or "robustness" in by_kind:
            assert isinstance(model, Classifier)
            predict = lambda b: model.predict_logits({k: v.to(model.device) for k, v in b.items()}).cpu()  # noqa: E731
            clean = [(predict(batch), batch["label"]) for batch in loader]  # [((B, K), (B,))], shared by both kinds
            for logits, label in clean:
                for n in by_kind.get("classification", []):
                    metrics[n].update(logits, label)
            scores += [sc for n in by_kind.get("classification", []) for sc in self._scores(n, metrics[n], split, n_real)]

        if "robustness" in by_kind:
            for i, (name, kind, modality, level) in enumerate(conditions(data_spec.modalities)):
                # The same corrupted test set for every model and seed: the noise seed depends on the condition only.
                gen = torch.Generator().manual_seed(10_000 + i)
                if kind == "clean":
                    batches = clean
                else:
                    def corrupt(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                        if kind == "drop":
                            return drop_modality(b, modality)
                        return add_noise(b, modality, level, data_spec.vocab_size, generator=gen)

                    batches = [(predict(corrupt(batch)), batch["label"]) for batch in loader]
                for logits, label in batches:
                    for n in by_kind["robustness"]:
                        metrics[n].update(name, logits, label)
            scores += [sc for n in by_kind["robustness"] for sc in self._scores(n, metrics[n], split, n_real)]
        return scores

    def _conditional_scores(
        self,
        model: TextToImageGenerator,
        dm: BenchDataModule,
        seed: int,
        metrics: dict[str, BenchMetric],
        by_kind: dict[str, list[str]],
    ) -> list[Score]:
        """The caption-conditioned metrics (see :mod:`bench.metrics.cross_modal`): images are generated once from
        the first :meth:`conditional_count` reference captions and shared by every conditional metric."""
        split, bs = self.spec.real_split, self.spec.batch_size
        tensors = dm.split_tensors(split)
        if "text" not in tensors:
            raise ValueError(f"datamodule {dm.registry_name!r} has no captions ('text') for conditional metrics")
        n = self.conditional_count(len(tensors["label"]))
        text, labels = tensors["text"][:n], tensors["label"][:n]  # (n, L), (n,)
        real_images = to_uint8(tensors["image"][:n])  # (n, C, H, W) uint8
        on_reference = {name for kind in CONDITIONAL_INPUT_KINDS for name in by_kind.get(kind, [])
                        if METRICS.get(name).on_reference_data}
        needs_fake = any(name not in on_reference for kind in CONDITIONAL_INPUT_KINDS for name in by_kind.get(kind, []))
        fake = generate_from_captions(model, text, bs, seed, self.console) if needs_fake else None
        scores: list[Score] = []

        if "conditional_features" in by_kind:
            if self.backbone is None:
                raise ValueError(f"{by_kind['conditional_features']} need the track's feature backbone (eval.backbone)")
            real = self.real_features(dm)
            fake_features = extract_features(
                self.backbone, iter_batches(fake, bs), n, "features of generations", self.console
            )
            bb = self.backbone
            for name in by_kind["conditional_features"]:
                metrics[name].update(real, real=True)
                metrics[name].update(fake_features, real=False)
                scores += self._scores(name, metrics[name], split, len(real), backbone_version_protocol(bb), n_fake=n,
                                       backbone=bb.registry_name, backbone_sha256=bb.weights_sha256, resize=bb.resize)

        if "image_text" in by_kind:
            clip = self.clip_backbone
            if clip is None:
                raise ValueError(f"{by_kind['image_text']} need an image-text backbone (eval.clip_backbone)")
            captions = caption_strings(dm, split)[:n]
            for name in by_kind["image_text"]:
                if name in on_reference:
                    key = ("similarity", dm.identity(), split, str(n), clip.registry_name, clip.weights_sha256)
                    if key not in self._reference_outputs:
                        self._reference_outputs[key] = caption_similarities(clip, real_images, captions, bs)
                    cosine, truncated = self._reference_outputs[key]
                else:
                    cosine, truncated = caption_similarities(clip, fake, captions, bs)
                metrics[name].update(cosine, num_truncated=truncated)
                scores += self._scores(
                    name, metrics[name], split, n, n_fake=None if name in on_reference else n,
                    backbone=clip.registry_name, backbone_sha256=clip.weights_sha256,
                    resize=getattr(clip, "resize", ""), protocol_extra=f"clip_backbone={clip.registry_name}",
                )

        if "conditional_logits" in by_kind:
            clf = self.classifier_backbone
            if clf is None:
                raise ValueError(
                    f"{by_kind['conditional_logits']} need a classifier backbone (eval.classifier_backbone)"
                )
            for name in by_kind["conditional_logits"]:
                if name in on_reference:
                    key = ("classify", dm.identity(), split, str(n), clf.registry_name, clf.weights_sha256)
                    if key not in self._reference_outputs:
                        self._reference_outputs[key] = (classifier_logits(clf, real_images, bs), 0)
                    logits = self._reference_outputs[key][0]
                else:
                    logits = classifier_logits(clf, fake, bs)
                metrics[name].update(logits, labels)
                scores += self._scores(
                    name, metrics[name], split, n, n_fake=None if name in on_reference else n,
                    backbone=clf.registry_name, backbone_sha256=clf.weights_sha256, resize=getattr(clf, "resize", ""),
                    protocol_extra=f"classifier={clf.registry_name},classifier_sha256={clf.weights_sha256}",
                )
        return scores

    @staticmethod
    def _scores(
        name: str, metric: BenchMetric, split: str, n_real: int, protocol_extra: str = "", **extra
    ) -> list[Score]:
        """One Score per value: a metric's ``compute()`` returns a scalar (named like the metric) or a dict of
        named scalars (e.g. ``{"precision": ..., "recall": ...}``), each becoming its own result row.
        ``protocol_extra`` is appended to the metric's protocol (e.g. the backbone that scored it)."""
        result = metric.compute()
        values = result if isinstance(result, dict) else {name: result}
        protocol = ",".join(p for p in (metric.protocol(), protocol_extra) if p)
        return [
            Score(
                metric=key,
                value=float(value),
                higher_is_better=bool(metric.higher_is_better),
                protocol=protocol,
                split=split,
                n_real=n_real,
                **extra,
            )
            for key, value in values.items()
        ]
