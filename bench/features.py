"""Images → backbone features, with a progress bar, and the on-disk cache of real-data features.

Real features are computed once per (datamodule identity, split, backbone, weights hash, resize, forward version)
and cached; ``bench run`` and ``bench eval`` reuse them across models, seeds and runs.

Cache file format (version 2). ``<cache dir>/<key>.pt``, where ``<key>`` is :func:`real_cache_key`'s string, holds
one ``torch.save``'d dict, read back with ``torch.load(..., weights_only=True)``::

    {"format": "bench-real-features", "version": 2,
     "record": {"key": "<key>",                        # the file name's key
                "parts": {"datamodule": ..., "split": ..., "backbone": ..., "weights_sha256": <all 64 digits>,
                          "resize": ..., "forward_version": ...},   # {} for a key not made by real_cache_key
                "n": N, "shape": [N, D], "dtype": "float32",
                "features_sha256": <sha256 of the features' bytes>,
                "source_sha256": <sha256 of the uint8 source images' bytes, or "" when the writer had none>},
     "features": <(N, D) tensor>}

A file is used only when it loads, is of this format, its record matches the key asked for (every part), its
features have the recorded shape and dtype and their sha256 is the recorded one, and, where the caller says so,
N is the number of source images and the source hash is theirs. Anything else — an unreadable, truncated or
foreign file, a bare tensor (the version-1 format), a record of another key, a checksum mismatch, another number
of rows — is reported in one warning line (``cache file PATH failed verification (reason); recomputing``) and the
features are recomputed and the file rewritten atomically (:func:`bench.atomic.atomic_write`). Never is an
unverified file used: a planted tensor of the right shape cannot give a wrong FID.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
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
    """A rich progress bar (drawn on ``console``; disabled when it is None or not a terminal)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        # drawn only on a terminal: a log file or pipe would get an empty line per bar instead
        console=console or Console(file=io.StringIO()), disable=console is None or not console.is_terminal,
        transient=True,
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


#: ``format`` field of a real-feature cache file, and its version (see the module docstring).
CACHE_FORMAT = "bench-real-features"
CACHE_VERSION = 2


class CacheVerificationWarning(UserWarning):
    """A real-feature cache file failed verification and is being recomputed."""


class RealCacheKey(str):
    """A real-feature cache key: the string (the file name) plus the parts it was made of, recorded in the file.

    A plain ``str`` is accepted wherever a key is (its parts are then unknown and only the string is checked).
    """

    parts: dict[str, str]

    def __new__(cls, text: str, parts: dict[str, str] | None = None) -> RealCacheKey:
        # parts is optional so that pickling (to another process) round-trips: str's reduce passes the text
        # only, and the parts come back as instance state
        key = super().__new__(cls, text)
        key.parts = dict(parts or {})
        return key


def tensor_sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's bytes (C order, native byte order), whatever its dtype."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()


def images_sha256(images: torch.Tensor, batch_size: int = 4096) -> str:
    """sha256 of the uint8 images a backbone sees (float [0, 1] images quantized by :func:`to_uint8`, batch by
    batch so no full-size copy is made)."""
    digest = hashlib.sha256()
    for batch in iter_batches(images, batch_size):
        x = batch if batch.dtype == torch.uint8 else to_uint8(batch)
        digest.update(x.detach().cpu().contiguous().reshape(-1).numpy())
    return digest.hexdigest()


def _key_parts(key: str) -> dict[str, str]:
    return dict(key.parts) if isinstance(key, RealCacheKey) else {}


def _verify(
    path: Path, key: str, expected_n: int | None, source_sha256: str | None
) -> tuple[torch.Tensor | None, str]:
    """The cached features if ``path`` passes every check, else None and why not (one phrase)."""
    try:
        with warnings.catch_warnings():  # torch's own warnings on a foreign pickle: the one line below says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to read the file means it cannot be trusted; it is rewritten
        first = (str(err).splitlines() or [""])[0][:160]
        return None, f"cannot be read: {type(err).__name__}: {first}"
    if isinstance(payload, torch.Tensor):
        return None, "a bare tensor without a record (the old, unverifiable format)"
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        return None, f"not a real-feature cache file (a {type(payload).__name__})"
    if payload.get("version") != CACHE_VERSION:
        return None, f"format version {payload.get('version')!r}, not {CACHE_VERSION}"
    record, feats = payload.get("record"), payload.get("features")
    if not isinstance(record, dict) or not isinstance(feats, torch.Tensor):
        return None, "no record or no features tensor"
    if record.get("key") != str(key):
        return None, f"recorded for key {record.get('key')!r}"
    recorded_parts = record.get("parts") if isinstance(record.get("parts"), dict) else {}
    for name, value in _key_parts(key).items():
        if recorded_parts.get(name) != value:
            return None, f"recorded {name} {recorded_parts.get(name)!r}, not {value!r}"
    if list(feats.shape) != record.get("shape") or str(feats.dtype).removeprefix("torch.") != record.get("dtype"):
        return None, (f"features of shape {list(feats.shape)} {feats.dtype} but recorded {record.get('shape')} "
                      f"{record.get('dtype')}")
    if feats.ndim != 2 or record.get("n") != feats.shape[0]:
        return None, f"features of shape {list(feats.shape)} for recorded n={record.get('n')!r}"
    if tensor_sha256(feats) != record.get("features_sha256"):
        return None, "the features' sha256 differs from the recorded one (the features were altered)"
    if expected_n is not None and feats.shape[0] != expected_n:
        return None, f"{feats.shape[0]} rows but the source has {expected_n} images"
    if source_sha256 is not None and record.get("source_sha256") != source_sha256:
        recorded = record.get("source_sha256") or "none"
        return None, f"source images sha256 {recorded[:12]} recorded, {source_sha256[:12]} now"
    return feats, ""


def cached_real_features(
    key: str,
    compute: Callable[[], torch.Tensor],
    cache_dir: Path | None = None,
    *,
    source_images: torch.Tensor | None = None,
    expected_n: int | None = None,
    source_sha256: str | None = None,
) -> tuple[torch.Tensor, bool]:
    """Real-data features from ``cache_dir/key.pt`` if that file passes verification, else computed and stored.

    Args:
        key: :func:`real_cache_key` (its parts are recorded and checked), or any string.
        compute: Returns the (N, D) features; called only when no verified file exists.
        cache_dir: The cache folder (None: :func:`default_cache_dir`).
        source_images: The images ``compute`` runs on, if the caller holds them: gives ``expected_n`` (their
            number) and ``source_sha256`` (:func:`images_sha256`).
        expected_n: The number of rows the features must have (checked on read, and on what ``compute`` returns).
        source_sha256: The source images' hash the file must record.

    Returns:
        The (N, D) features and whether they came from the cache.

    Raises:
        RuntimeError: ``compute`` returned something else than ``expected_n`` rows of features (a bug, not input;
            nothing is written).
    """
    if source_images is not None:
        expected_n = len(source_images) if expected_n is None else expected_n
        source_sha256 = images_sha256(source_images) if source_sha256 is None else source_sha256
    path = (cache_dir or default_cache_dir()) / f"{key}.pt"
    if path.exists():
        feats, reason = _verify(path, key, expected_n, source_sha256)
        if feats is not None:
            return feats, True
        warnings.warn(f"cache file {path} failed verification ({reason}); recomputing", CacheVerificationWarning,
                      stacklevel=2)
    feats = compute()
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or (expected_n is not None and len(feats) != expected_n):
        shape = list(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise RuntimeError(f"real features for {key}: computed {shape}, expected ({expected_n or 'N'}, D) features")
    feats = feats.detach().cpu().contiguous()
    record = {
        "key": str(key), "parts": _key_parts(key), "n": int(feats.shape[0]), "shape": list(feats.shape),
        "dtype": str(feats.dtype).removeprefix("torch."), "features_sha256": tensor_sha256(feats),
        "source_sha256": source_sha256 or "",
    }
    payload = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "record": record, "features": feats}
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")
    return feats, False


def real_cache_key(datamodule_identity: str, split: str, backbone: FeatureBackbone) -> RealCacheKey:
    """``{datamodule}-{args hash}-{split}-{backbone}-{weights sha256[:12]}-{resize}-fwd{forward version}-features``:
    features of an older forward of the same backbone and weights are never reused. The returned string carries
    its parts (with the whole weights sha256) for the file's record."""
    parts = {
        "datamodule": str(datamodule_identity), "split": str(split), "backbone": str(backbone.registry_name),
        "weights_sha256": str(backbone.weights_sha256), "resize": str(backbone.resize),
        "forward_version": str(backbone.forward_version),
    }
    text = (f"{datamodule_identity}-{split}-{backbone.registry_name}-{backbone.weights_sha256[:12]}-{backbone.resize}"
            f"-fwd{backbone.forward_version}-features")
    return RealCacheKey(text, parts)
