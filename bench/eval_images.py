"""``bench eval``: distribution metrics between any two image sets, with the protocol that produced them.

Every request is checked before any feature is computed, so no metric can come out NaN or inf from too few
images: FID needs >= 2 images per set (a covariance), KID a subset size >= 2 (the unbiased MMD² estimate) and so
>= 2 images per set, IS at least one fake image per split, precision/recall/density/coverage k + 1 images per set
(k = :data:`PRC_K` neighbours besides the point itself). The counts are those scored, i.e. after ``n``. A value
that still comes out non-finite is reported as an :class:`EvalInputError`, never returned.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bench import catalog
from bench.backbones.base import FeatureBackbone
from bench.errors import InputError
from bench.features import cached_real_features, extract_features, iter_batches, real_cache_key
from bench.image_inputs import ImageSet
from bench.metrics.fid import FID
from bench.metrics.inception_score import inception_score
from bench.metrics.kid import kernel_distance
from bench.metrics.prc import prdc
from bench.provenance import environment_info

EVAL_METRICS = catalog.EVAL_METRICS
#: Neighbour rank of precision/recall/density/coverage.
PRC_K = 3
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
    n_real: int, n_fake: int, metrics: list[str], n: int | None = None, seed: int = 0, batch_size: int = 64,
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
    if "fid" in metrics and min(real, fake) < 2:
        raise EvalInputError(f"FID needs at least 2 images per set (for the covariance), {got}")
    if "kid" in metrics and min(real, fake) < 2:
        raise EvalInputError(f"KID needs at least 2 images per set (subset size >= 2), {got}")
    if "prc" in metrics and min(real, fake) < PRC_K + 1:
        raise EvalInputError(f"precision/recall/density/coverage (k={PRC_K}) need at least {PRC_K + 1} images per "
                             f"set (k + 1), {got}")
    if "is" in metrics and fake < is_splits:
        raise EvalInputError(f"IS with {is_splits} splits needs at least {is_splits} fake images (one per split), "
                             f"got {fake}{after}; lower --is-splits")


def _check_finite(features: torch.Tensor | None, label: str, backbone: FeatureBackbone) -> None:
    if features is not None and not bool(torch.isfinite(features).all()):
        bad = int((~torch.isfinite(features)).any(dim=1).sum())
        raise EvalInputError(f"backbone {backbone.registry_name} gave non-finite {label} for {bad} of "
                             f"{len(features)} images; no metric can be computed from them")


def _outputs(backbone: FeatureBackbone, images: ImageSet, batch_size: int, with_logits: bool, label: str,
             console: Console | None, cache_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of a whole image set; datamodule features come from the shared cache."""
    run = lambda logits: extract_features(  # noqa: E731
        backbone, iter_batches(images.images, batch_size), len(images.images), label, console, with_logits=logits
    )
    if images.cache_identity is not None and not with_logits:
        key = real_cache_key(*images.cache_identity, backbone)
        return cached_real_features(key, lambda: run(False), cache_dir, source_images=images.images)[0], None
    return run(True) if with_logits else (run(False), None)


def _subset(x: torch.Tensor | None, idx: torch.Tensor | None) -> torch.Tensor | None:
    return x if x is None or idx is None else x[idx]


def evaluate_image_sets(
    real: ImageSet,
    fake: ImageSet,
    metrics: list[str],
    backbone: FeatureBackbone,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    cache_dir: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Scores ``fake`` against ``real`` on ``backbone``; IS is computed on ``fake``.

    Args:
        n: If given, a seeded random subset of at most ``n`` images of each set is scored.

    Raises:
        EvalInputError: Too few images for a metric asked for, a bad size or seed (checked before any feature
            is computed, see :func:`check_request`), or a metric that came out non-finite.

    Returns:
        ``fid``, ``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``, ``precision``, ``recall``, ``density``,
        ``coverage`` (those asked for) and ``protocol``.
    """
    need_real = any(m in metrics for m in ("fid", "kid", "prc"))
    check_request(len(real.images), len(fake.images), metrics, n, seed, batch_size, kid_subsets, kid_subset_size,
                  is_splits)
    real_f, _ = _outputs(backbone, real, batch_size, False, "real features", console, cache_dir) if need_real else (None, None)
    fake_f, fake_logits = _outputs(backbone, fake, batch_size, "is" in metrics, "fake features", console, None)
    _check_finite(real_f, "real features", backbone)
    _check_finite(fake_f, "fake features", backbone)
    _check_finite(fake_logits, "fake logits", backbone)
    gen = torch.Generator().manual_seed(seed)
    pick = lambda count: torch.randperm(count, generator=gen)[:n] if n is not None and n < count else None  # noqa: E731
    if real_f is not None:
        real_f = _subset(real_f, pick(len(real_f)))
    idx = pick(len(fake_f))
    fake_f, fake_logits = _subset(fake_f, idx), _subset(fake_logits, idx)

    out: dict[str, Any] = {}
    if "fid" in metrics:
        fid = FID(num_features=real_f.shape[1])
        fid.update(real_f, real=True)
        fid.update(fake_f, real=False)
        out["fid"] = float(fid.compute())
    subset_size = min(kid_subset_size, len(real_f), len(fake_f)) if "kid" in metrics else None
    if "kid" in metrics:
        mean, std = kernel_distance(real_f, fake_f, kid_subsets, subset_size, seed)
        out["kid_mean"], out["kid_std"] = float(mean), float(std)
    if "is" in metrics:
        out["is_mean"], out["is_std"] = inception_score(fake_logits, splits=is_splits, seed=seed)
    if "prc" in metrics:
        out.update({k: float(v) for k, v in prdc(real_f, fake_f, k=PRC_K).items()})
    for key, value in out.items():
        if not math.isfinite(value):
            metric = {"kid_mean": "kid", "kid_std": "kid", "is_mean": "is", "is_std": "is"}.get(key, key)
            metric = "prc" if metric in ("precision", "recall", "density", "coverage") else metric
            raise EvalInputError(f"{key} came out {value} on {len(fake_f)} fake and "
                                 f"{'no' if real_f is None else len(real_f)} real images; likely cause: "
                                 f"{_LIKELY_CAUSE[metric]}")
    env = environment_info("cpu", 1)
    out["protocol"] = {
        "backbone": backbone.registry_name,
        "backbone_sha256": backbone.weights_sha256,
        "backbone_version": backbone.forward_version,
        "resize": backbone.resize,
        "real": real.source,
        "fake": fake.source,
        "n_real": None if real_f is None else len(real_f),
        "n_fake": len(fake_f),
        "seed": seed,
        "splits": is_splits if "is" in metrics else None,
        "subsets": kid_subsets if "kid" in metrics else None,
        "subset_size": subset_size,
        "prc_k": PRC_K if "prc" in metrics else None,
        "versions": env["packages"],
        "git_commit": env["git_commit"],
    }
    return out
