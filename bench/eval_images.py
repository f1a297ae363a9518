"""``bench eval``: distribution metrics between any two image sets, with the protocol that produced them.

Every request is checked before any feature is computed, so no metric can come out NaN or inf from too few
images: FID needs >= 2 images per set (a covariance), KID a subset size >= 2 (the unbiased MMD² estimate) and so
>= 2 images per set, IS at least one fake image per split, precision/recall/density/coverage k + 1 images per set
(k = :data:`PRC_K` neighbours besides the point itself). The counts are those scored, i.e. after ``n``. A value
that still comes out non-finite is reported as an :class:`EvalInputError`, never returned.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from rich.console import Console

from bench import catalog
from bench.backbones.base import FeatureBackbone
from bench.errors import InputError
from bench.evaluate import Evaluator
from bench.image_inputs import ImageSet
from bench.metrics import requests as rq
from bench.providers import ImageSetSubject, UnitInputs
from bench.provenance import environment_info
from bench.spec import EvalSpec

EVAL_METRICS = catalog.EVAL_METRICS
#: Neighbour rank of precision/recall/density/coverage.
PRC_K = 3
#: The default seed of ``bench eval``: torch-fidelity's ``rng_seed`` (KID subsets, IS shuffle).
DEFAULT_SEED = 2020
#: The likely cause named when a metric still comes out non-finite (the last check of evaluate_image_sets).
_LIKELY_CAUSE = {
    "fid": "near-identical images make the covariance product's square root numerically unstable",
    "kid": "the features overflow the cubic kernel",
    "is": "the backbone's logits overflow the softmax",
    "prc": "every image of a set has the same features",
}


class EvalInputError(InputError):
    """A ``bench eval`` request that cannot give a finite number (too few images for a metric, a bad size)."""


def check_request(
    n_real: int, n_fake: int, metrics: list[str], n: int | None = None, seed: int = 2020, batch_size: int = 64,
    kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10,
) -> None:
    """Refuses, in one line, sizes with which a metric asked for would be undefined (NaN, inf, or an error).

    Args:
        n_real: Images in the real set. n_fake: Images in the fake set. The other arguments are those of
            :func:`evaluate_image_sets`.

    Raises:
        EvalInputError: The first problem found, with the minimum that is needed.
    """
    for flag, value, minimum in (("--n", n, 1), ("--batch-size", batch_size, 1), ("--kid-subsets", kid_subsets, 1),
                                 ("--kid-subset-size", kid_subset_size, 2), ("--is-splits", is_splits, 1)):
        if value is not None and value < minimum:
            why = " (the unbiased MMD² estimate needs 2 images per subset)" if flag == "--kid-subset-size" else ""
            raise EvalInputError(f"{flag} must be >= {minimum}{why}, got {value}")
    if not 0 <= seed < 2**32:
        raise EvalInputError(f"--seed must be in [0, 2**32 - 1], got {seed}")
    real = n_real if n is None else min(n_real, n)
    fake = n_fake if n is None else min(n_fake, n)
    after = f" (after --n {n})" if n is not None and (real < n_real or fake < n_fake) else ""
    got = f"got {real} real and {fake} fake{after}"
    bases = {m.partition("@")[0] for m in metrics}
    if bases & {"fid", "fd"} and min(real, fake) < 2:
        raise EvalInputError(f"FID needs at least 2 images per set (for the covariance), {got}")
    if bases & {"kid", "kd"} and min(real, fake) < 2:
        raise EvalInputError(f"KID needs at least 2 images per set (subset size >= 2), {got}")
    if "prc" in bases and min(real, fake) < PRC_K + 1:
        raise EvalInputError(f"precision/recall/density/coverage (k={PRC_K}) need at least {PRC_K + 1} images per "
                             f"set (k + 1), {got}")
    if "is" in bases and fake < is_splits:
        raise EvalInputError(f"IS with {is_splits} splits needs at least {is_splits} fake images (one per split), "
                             f"got {fake}{after}; lower --is-splits")


def _check_finite(inputs: UnitInputs) -> None:
    """Refuses backbone outputs that are not finite: no metric can be computed from them."""
    for request, backbone, values in inputs.backbone_outputs():
        if not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).flatten(1).any(dim=1).sum())
            what = "logits" if isinstance(request, rq.Logits) else "features"
            raise EvalInputError(f"backbone {backbone.registry_name} gave non-finite {request.source} {what} for "
                                 f"{bad} of {len(values)} images; no metric can be computed from them")


def _subject(real: ImageSet, fake: ImageSet, train: ImageSet | None, n: int | None,
             seed: int) -> ImageSetSubject:
    """The image sets as the evaluator's subject; with ``n``, a seeded random subset of each larger set (drawn
    real, fake, then train). A subset is never read from or written to the real-feature cache."""
    gen = torch.Generator().manual_seed(seed)
    sets, cache = {}, {}
    for source, image_set in (("real", real), ("fake", fake), ("train", train)):
        if image_set is None:
            continue
        images = image_set.images
        if n is not None and n < len(images):
            images = images[torch.randperm(len(images), generator=gen)[:n]]
        elif image_set.cache_identity is not None and source != "fake":
            cache[source] = image_set.cache_identity
        sets[source] = images
    return ImageSetSubject(sets, cache, description="image sets")


def evaluate_image_sets(
    real: ImageSet,
    fake: ImageSet,
    metrics: list[str],
    backbone: FeatureBackbone,
    n: int | None = None,
    seed: int = DEFAULT_SEED,
    batch_size: int = 64,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    cache_dir: Path | None = None,
    console: Console | None = None,
    backbones: dict[str, FeatureBackbone] | None = None,
    train: ImageSet | None = None,
) -> dict[str, Any]:
    """Scores ``fake`` against ``real`` with the evaluator of ``bench run`` (:class:`bench.evaluate.Evaluator` on
    an :class:`~bench.providers.ImageSetSubject`): same metrics, names, protocol text and cache keys.

    Args:
        metrics: Metric entries (``name`` or ``name@backbone``); IS is computed on ``fake``, memorization
            metrics against ``train``.
        backbone: The feature backbone of entries without ``@``. backbones: Those of ``@`` entries, by name.
        n: If given, a seeded random subset of at most ``n`` images of each set is scored.
        seed: Seeds the subsets, KID's subset draws and IS's shuffle (torch-fidelity's 2020 by default).

    Raises:
        EvalInputError: Too few images for a metric asked for, a bad size or seed (checked before any feature
            is computed, see :func:`check_request`), a metric the sets cannot answer, or a value that came out
            non-finite.

    Returns:
        ``{row name: value}`` and ``{row name}_std`` where the metric has a spread (the values), ``rows`` (every
        result row as ``bench run`` writes it: metric, value, value_std, protocol, backbone, sha256, resize,
        n_real, n_fake) and ``protocol`` (what was scored, with what, and the software versions).
    """
    check_request(len(real.images), len(fake.images), metrics, n, seed, batch_size, kid_subsets, kid_subset_size,
                  is_splits)
    subject = _subject(real, fake, train, n, seed)
    spec = EvalSpec(backbone=backbone.registry_name, n_fake=len(subject.sets["fake"]), batch_size=batch_size,
                    kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_splits=is_splits)
    evaluator = Evaluator(spec, tuple(metrics), backbone, cache_dir, console, backbones=backbones)
    for entry, metric in evaluator.build_metrics(_data_spec(subject), seed).items():
        unanswered = [r for r in metric.requests() if not subject.can_answer(r)]
        if unanswered:
            raise EvalInputError(f"metric {entry!r} needs {unanswered[0]!r}, which two image sets do not give"
                                 + (" (pass --train for memorization metrics)" if any(
                                     getattr(r, "source", "") == "train" for r in unanswered) else ""))
    try:
        scores = evaluator.score(subject, _data_spec(subject), seed, check=_check_finite)
    except ValueError as err:  # e.g. a backbone without class logits asked for IS
        raise EvalInputError(str(err).splitlines()[0]) from err
    out: dict[str, Any] = {}
    for s in scores:
        if not math.isfinite(s.value):
            base = s.metric.partition("@")[0]
            metric = "prc" if base in ("precision", "recall", "density", "coverage") else base
            cause = _LIKELY_CAUSE.get(metric, "the features are degenerate")
            raise EvalInputError(f"{s.metric} came out {s.value} on {s.n_fake} fake and "
                                 f"{'no' if s.n_real is None else s.n_real} real images; likely cause: {cause}")
        out[s.metric] = s.value
        if s.value_std is not None:
            out[f"{s.metric}_std"] = s.value_std
    out["rows"] = [dataclasses.asdict(s) for s in scores]
    env = environment_info("cpu", 1)
    counts = {source: len(images) for source, images in subject.sets.items()}
    out["protocol"] = {
        "backbone": backbone.registry_name,
        "backbone_sha256": backbone.weights_sha256,
        "backbone_version": backbone.forward_version,
        "resize": backbone.resize,
        "real": real.source,
        "fake": fake.source,
        "train": None if train is None else train.source,
        "n_real": counts["real"] if any(m.partition("@")[0] != "is" for m in metrics) else None,
        "n_fake": counts["fake"],
        "seed": seed,
        "splits": is_splits if any(m.partition("@")[0] == "is" for m in metrics) else None,
        "subsets": kid_subsets if any(m.partition("@")[0] in ("kid", "kd") for m in metrics) else None,
        "subset_size": min(kid_subset_size, counts["real"], counts["fake"]) if any(
            m.partition("@")[0] in ("kid", "kd") for m in metrics) else None,
        "prc_k": PRC_K if any(m.partition("@")[0] == "prc" for m in metrics) else None,
        "versions": env["packages"],
        "git_commit": env["git_commit"],
    }
    return out


def _data_spec(subject: ImageSetSubject) -> SimpleNamespace:
    """The data facts a metric is built from, read off the fake images (image sets have no datamodule)."""
    return SimpleNamespace(image_shape=tuple(subject.sets["fake"].shape[1:]), num_classes=0, modalities=("image",))
