"""``bench eval``: distribution metrics between any two image sets, with the protocol that produced them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bench.backbones.base import FeatureBackbone
from bench.features import cached_real_features, extract_features, iter_batches, real_cache_key
from bench.image_inputs import ImageSet
from bench.metrics.fid import FID
from bench.metrics.inception_score import inception_score
from bench.metrics.kid import kernel_distance
from bench.metrics.prc import prdc
from bench.provenance import environment_info

EVAL_METRICS = ("fid", "kid", "is", "prc")


def _outputs(backbone: FeatureBackbone, images: ImageSet, batch_size: int, with_logits: bool, label: str,
             console: Console | None, cache_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of a whole image set; datamodule features come from the shared cache."""
    run = lambda logits: extract_features(  # noqa: E731
        backbone, iter_batches(images.images, batch_size), len(images.images), label, console, with_logits=logits
    )
    if images.cache_identity is not None and not with_logits:
        key = real_cache_key(*images.cache_identity, backbone)
        return cached_real_features(key, lambda: run(False), cache_dir)[0], None
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

    Returns:
        ``fid``, ``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``, ``precision``, ``recall``, ``density``,
        ``coverage`` (those asked for) and ``protocol``.
    """
    need_real = any(m in metrics for m in ("fid", "kid", "prc"))
    real_f, _ = _outputs(backbone, real, batch_size, False, "real features", console, cache_dir) if need_real else (None, None)
    fake_f, fake_logits = _outputs(backbone, fake, batch_size, "is" in metrics, "fake features", console, None)
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
        out.update({k: float(v) for k, v in prdc(real_f, fake_f, k=3).items()})
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
        "prc_k": 3 if "prc" in metrics else None,
        "versions": env["packages"],
        "git_commit": env["git_commit"],
    }
    return out
