"""Per-class FID: the mean over classes of the Fréchet distance between the real and generated features of a class.

The real features of class c are those labelled c; the generated features of class c are those the track's
classifier backbone assigns to c (argmax of its logits), so an unconditional model is scored class by class.
A class with fewer than 2 samples on either side (no covariance) is skipped and named in :meth:`protocol`; a
model that never produces some class therefore loses that class from the mean instead of being penalised for it,
which is why the skipped classes are part of the protocol. The per-class distances use the FID's own estimator
(:func:`bench.metrics.fid.moments_from_sums`, :func:`bench.metrics.fid.frechet_distance`: float64 moments,
unbiased covariances). Each class has fewer samples than the whole set, so the per-class FIDs are more biased
upwards than the FID (compare models at equal sample counts only).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.metrics import requests as rq
from bench.metrics.base import BenchMetric, Estimate, MetricContext
from bench.metrics.fid import frechet_distance, moments_from_sums
from bench.metrics.registry import METRICS

#: Fewest samples a class needs on each side (an unbiased covariance needs 2).
MIN_SAMPLES = 2


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of ``x`` (n, D), as the FID metric computes them."""
    x = x.double()
    return moments_from_sums(x.sum(0), x.T @ x, torch.tensor(float(len(x)), dtype=torch.float64))


def per_class_fid(
    real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
    num_classes: int | None = None,
) -> tuple[dict[int, torch.Tensor], list[int]]:
    """The FID of every class with at least 2 real and 2 generated samples, and the classes skipped.

    Args:
        real: (N, D) real features. real_labels: (N,) their class labels.
        fake: (M, D) generated features. fake_labels: (M,) their assigned classes (e.g. a classifier's argmax).
        num_classes: The classes considered are 0 .. num_classes - 1 (None: up to the largest label seen).

    Returns:
        ``({class: FID (0-dim float64)}, [skipped classes])``, both in class order.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) features, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real_labels.shape != real.shape[:1] or fake_labels.shape != fake.shape[:1]:
        raise ValueError(f"expected one label per sample, got {tuple(real_labels.shape)} labels for "
                         f"{len(real)} real and {tuple(fake_labels.shape)} for {len(fake)} generated samples")
    real_labels, fake_labels = real_labels.long().cpu(), fake_labels.long().cpu()
    if num_classes is None:
        num_classes = int(torch.cat([real_labels, fake_labels, torch.zeros(1, dtype=torch.long)]).max()) + 1
    real_counts = torch.bincount(real_labels, minlength=num_classes)[:num_classes]  # (K,)
    fake_counts = torch.bincount(fake_labels, minlength=num_classes)[:num_classes]  # (K,)
    usable = [c for c in range(num_classes) if real_counts[c] >= MIN_SAMPLES and fake_counts[c] >= MIN_SAMPLES]
    skipped = [c for c in range(num_classes) if c not in usable]
    fewest = min((min(int(real_counts[c]), int(fake_counts[c])) for c in usable), default=None)
    if fewest is not None and fewest < real.shape[1]:
        warnings.warn(
            f"per-class FID with as few as {fewest} samples in a class, fewer than the {real.shape[1]} feature "
            "dimensions: the class covariances are rank-deficient and the per-class FIDs strongly biased upwards; "
            "compare models at equal n only.",
            stacklevel=2,
        )
    values: dict[int, torch.Tensor] = {}
    for c in usable:
        mu1, sigma1 = _moments(real[(real_labels == c).to(real.device)])
        mu2, sigma2 = _moments(fake[(fake_labels == c).to(fake.device)])
        values[c] = frechet_distance(mu1, sigma1, mu2, sigma2)
    return values, skipped


@METRICS.register("per-class-fid")
class PerClassFID(BenchMetric, Metric):
    """Mean over classes of the class-conditional FID (generated classes by the classifier backbone's argmax);
    lower is better. The value's spread is the (population) std of the per-class FIDs.

    Keeps every feature and label (memory grows with N).
    """

    input_kind = "features"
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for state in ("real_features", "real_labels", "fake_features", "fake_logits"):
            self.add_state(state, [], dist_reduce_fx="cat")
        self.last_classes: list[int] = []
        self.last_skipped: list[int] = []
        self.last_num_classes: int | None = None

    @classmethod
    def build(cls, ctx: MetricContext) -> PerClassFID:
        return cls()

    def requests(self) -> tuple[rq.Request, ...]:
        return (rq.Features("real"), rq.Labels("real"), rq.Features("fake"), rq.ClassifierLogits("fake"))

    def feed(self, inputs: Mapping[rq.Request, Any]) -> None:
        self.update(inputs[rq.Features("real")], inputs[rq.Labels("real")], inputs[rq.Features("fake")],
                    inputs[rq.ClassifierLogits("fake")])

    def update(self, real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor,
               fake_logits: torch.Tensor) -> None:  # (N, D), (N,), (M, D), (M, K)
        self.real_features.append(real.detach().double())
        self.real_labels.append(real_labels.detach().long())
        self.fake_features.append(fake.detach().double())
        self.fake_logits.append(fake_logits.detach().float())

    def per_class(self) -> dict[int, torch.Tensor]:
        """The FID of every usable class (and records the classes used and skipped, for :meth:`protocol`)."""
        logits = dim_zero_cat(self.fake_logits)  # (M, K)
        real_labels = dim_zero_cat(self.real_labels)  # (N,)
        num_classes = max(logits.shape[1], int(real_labels.max()) + 1 if len(real_labels) else 0)
        values, skipped = per_class_fid(dim_zero_cat(self.real_features), real_labels,
                                        dim_zero_cat(self.fake_features), logits.argmax(1), num_classes)
        self.last_classes, self.last_skipped, self.last_num_classes = list(values), skipped, num_classes
        if not values:
            raise ValueError(f"per-class-fid: no class has at least {MIN_SAMPLES} real and {MIN_SAMPLES} generated "
                             f"samples (of {num_classes} classes)")
        return values

    def compute(self) -> torch.Tensor:
        return torch.stack(list(self.per_class().values())).mean()

    def values(self, name: str) -> dict[str, Estimate]:
        fids = torch.stack(list(self.per_class().values()))  # (C,)
        return {name: Estimate(float(fids.mean()), float(fids.std(unbiased=False)))}

    def protocol(self) -> str:
        skipped = ";".join(map(str, self.last_skipped)) or "none"
        return (f"classes={self.last_num_classes},used={len(self.last_classes)},skipped={skipped},"
                f"min_samples={MIN_SAMPLES},fake_class=classifier argmax,aggregate=mean over classes,"
                "std=population over classes,moments=float64,covariance=unbiased")
