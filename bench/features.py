"""Images → backbone features, with a progress bar, and the on-disk cache of real-data features.

Real features are computed once per (datamodule identity, split, backbone, weights hash, resize) and cached as a
tensor file (read back with ``weights_only=True``); ``bench run`` reuses them across models, seeds and runs.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.atomic import atomic_write
from bench.backbones.base import FeatureBackbone

CACHE_ENV = "BENCH_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$BENCH_CACHE_DIR``, else ``~/.cache/genfusion-bench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "genfusion-bench")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images → uint8 by rounding (how saved PNGs, and so paper protocols, see them)."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def progress(console: Console | None) -> Progress:
    """A rich progress bar (drawn on ``console``; disabled when it is None)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console or Console(file=io.StringIO()), disable=console is None, transient=True,
    )


def iter_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of at most ``batch_size`` along the first axis."""
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


def extract_features(
    backbone: FeatureBackbone,
    batches: Iterator[torch.Tensor],
    total: int,
    description: str,
    console: Console | None = None,
    with_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Runs image batches through ``backbone``; float [0, 1] batches are quantized to uint8 first.

    Args:
        backbone: The feature network. batches: Iterator of (B, C, H, W) float [0, 1] or uint8 tensors.
        total: Number of images (for the bar). description: Label of the bar. console: Where the bar is drawn.
        with_logits: Also return the backbone's class logits (same pass).

    Returns:
        (N, D) float32 features on the CPU, and with ``with_logits`` also (N, K) logits.
    """
    device = next(backbone.parameters()).device
    feats, logits = [], []
    with progress(console) as bar:
        task = bar.add_task(description, total=total)
        for images in batches:
            x = (images if images.dtype == torch.uint8 else to_uint8(images)).to(device)
            if with_logits:
                f, lg = backbone.features_and_logits(x)
                logits.append(lg.cpu())
            else:
                f = backbone(x)
            feats.append(f.cpu())
            bar.advance(task, len(images))
    return (torch.cat(feats), torch.cat(logits)) if with_logits else torch.cat(feats)


def cached_real_features(
    key: str, compute: Callable[[], torch.Tensor], cache_dir: Path | None = None
) -> tuple[torch.Tensor, bool]:
    """Real-data features from ``cache_dir/key.pt``, computing and storing them on a miss.

    Returns:
        The (N, D) features and whether they came from the cache.
    """
    path = (cache_dir or default_cache_dir()) / f"{key}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True), True
    feats = compute()
    atomic_write(path, lambda f: torch.save(feats, f), mode="wb")
    return feats, False


def real_cache_key(datamodule_identity: str, split: str, backbone: FeatureBackbone) -> str:
    """``{datamodule}-{args hash}-{split}-{backbone}-{weights sha256[:12]}-{resize}-fwd{forward version}-features``:
    features of an older forward of the same backbone and weights are never reused."""
    return (f"{datamodule_identity}-{split}-{backbone.registry_name}-{backbone.weights_sha256[:12]}-{backbone.resize}"
            f"-fwd{backbone.forward_version}-features")
