"""Scores a trained model on a datamodule with the requested metrics.

Which metrics apply to a model follows from its family base class (see ``models/base.py``) and the metric's
``input_kind``: feature and logit metrics need an :class:`~models.base.ImageGenerator`, likelihood metrics a
:class:`~models.base.LikelihoodModel`, reconstruction metrics an :class:`~models.base.AutoEncoder`, classification
metrics a :class:`~models.base.Classifier`. The evaluator never looks at model names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from bench.backbones.base import FeatureBackbone
from bench.corruptions import add_noise, drop_modality
from bench.features import cached_real_features, extract_features, iter_batches, real_cache_key
from bench.metrics import METRICS, BenchMetric, MetricContext
from bench.metrics.base import BACKBONE_INPUT_KINDS
from bench.metrics.robustness import conditions
from bench.spec import EvalSpec
from datamodules.base import BenchDataModule
from models.base import AutoEncoder, BenchModule, Classifier, ImageGenerator, LikelihoodModel

_REQUIRED_BASE = {
    "features": ImageGenerator,
    "logits": ImageGenerator,
    "reconstruction": AutoEncoder,
    "classification": Classifier,
    "likelihood": LikelihoodModel,
    "robustness": Classifier,
}


@dataclass(frozen=True)
class Score:
    """One metric value with everything needed to interpret it.

    Attributes:
        metric: Registered metric name. value: The number. higher_is_better: Its direction.
        protocol: Metric-specific choices (``key=value`` pairs). split: The real/reference split.
        n_real: Real samples used. n_fake: Generated samples used (feature metrics only).
        backbone, backbone_sha256, resize: The feature network (feature metrics only).
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
    """The metrics among ``metric_names`` that ``model``'s family can be scored on (a metric whose input kind the
    evaluator does not feed, e.g. ``image_text``, applies to no model yet)."""
    bases = [(m, _REQUIRED_BASE.get(METRICS.get(m).input_kind)) for m in metric_names]
    return [m for m, base in bases if base is not None and isinstance(model, base)]


def _sample_batches(model: ImageGenerator, n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, n, batch_size):
        yield model.sample(min(batch_size, n - i), generator=gen).float().cpu()


class Evaluator:
    """Computes one track's metrics for trained models.

    Args:
        spec: The track's evaluation settings.
        metrics: Metric names requested by the track.
        backbone: Feature network for feature metrics (None if the track has none).
        cache_dir: Where real-data features are cached (None: the default cache).
        console: Where progress bars are drawn (None: no bars).
    """

    def __init__(
        self,
        spec: EvalSpec,
        metrics: tuple[str, ...],
        backbone: FeatureBackbone | None,
        cache_dir: Path | None = None,
        console: Console | None = None,
    ) -> None:
        self.spec, self.metrics, self.backbone = spec, metrics, backbone
        self.cache_dir, self.console = cache_dir, console

    def real_features(self, dm: BenchDataModule) -> torch.Tensor:
        """(N, D) backbone features of the reference split, from the cache when present."""
        assert self.backbone is not None
        images = dm.split_tensors(self.spec.real_split)["image"]
        key = real_cache_key(dm.identity(), self.spec.real_split, self.backbone)
        compute = lambda: extract_features(  # noqa: E731
            self.backbone, iter_batches(images, self.spec.batch_size), len(images), "real features", self.console
        )
        feats, _ = cached_real_features(key, compute, self.cache_dir)
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
        )
        metrics: dict[str, BenchMetric] = {n: METRICS.get(n).build(ctx) for n in names}
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
            if "features" in by_kind:
                real = self.real_features(dm)
                for n in by_kind["features"]:
                    metrics[n].update(real, real=True)
                    metrics[n].update(fake, real=False)
                scores += [sc for n in by_kind["features"] for sc in self._scores(n, metrics[n], split, len(real), **extra)]
            for n in by_kind.get("logits", []):
                metrics[n].update(fake_logits)
                scores += self._scores(n, metrics[n], split, n_real, **extra)

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

    @staticmethod
    def _scores(name: str, metric: BenchMetric, split: str, n_real: int, **extra) -> list[Score]:
        """One Score per value: a metric's ``compute()`` returns a scalar (named like the metric) or a dict of
        named scalars (e.g. ``{"precision": ..., "recall": ...}``), each becoming its own result row."""
        result = metric.compute()
        values = result if isinstance(result, dict) else {name: result}
        return [
            Score(
                metric=key,
                value=float(value),
                higher_is_better=bool(metric.higher_is_better),
                protocol=metric.protocol(),
                split=split,
                n_real=n_real,
                **extra,
            )
            for key, value in values.items()
        ]
