"""Image sets for ``bench eval``: a folder of PNG/JPEG files, an ``.npz`` holding one uint8 array, or a registered
``datamodule:split``. Everything is validated up front; problems raise :class:`ImageInputError` saying what was
found and what is accepted.
"""

from __future__ import annotations

from bench.errors import InputError
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageInputError(InputError):
    """An image input cannot be used; the message says what was found and what is accepted."""


@dataclass(frozen=True)
class ImageSet:
    """Validated images and a name for them.

    Attributes:
        images: (N, C, H, W) uint8, C in {1, 3}.
        source: What was read (path or ``datamodule:split``).
        cache_identity: (datamodule identity, split) for the real-feature cache shared with ``bench run``;
            None for files.
    """

    images: torch.Tensor
    source: str
    cache_identity: tuple[str, str] | None = None


def _from_array(array: np.ndarray, source: str) -> torch.Tensor:
    if array.dtype != np.uint8:
        raise ImageInputError(f"{source}: images must be uint8 in [0, 255], found dtype {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]  # (N, H, W) -> (N, H, W, 1)
    if array.ndim != 4:
        raise ImageInputError(f"{source}: expected an array (N, H, W, C) or (N, C, H, W), found shape {array.shape}")
    if array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif array.shape[1] not in (1, 3):
        raise ImageInputError(f"{source}: found shape {array.shape}; one axis (1 or last) must be 1 or 3 channels")
    if len(array) == 0:
        raise ImageInputError(f"{source}: holds no images")
    return torch.from_numpy(np.ascontiguousarray(array))


def _from_npz(path: Path) -> torch.Tensor:
    with np.load(path, allow_pickle=False) as data:
        if len(data.files) != 1:
            raise ImageInputError(f"{path}: an .npz must hold exactly one array, found {len(data.files)}: {data.files}")
        return _from_array(data[data.files[0]], str(path))


def _from_folder(path: Path) -> torch.Tensor:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageInputError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
    arrays, sizes = [], set()
    for f in files:
        with Image.open(f) as im:
            mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
            arrays.append(np.asarray(im.convert(mode)))
            sizes.add((im.size, mode))
    if len(sizes) > 1:
        found = ", ".join(f"{w}x{h} {m}" for (w, h), m in sorted(sizes))
        raise ImageInputError(f"{path}: images must share one size and mode (grayscale or RGB), found {found}")
    return _from_array(np.stack(arrays), str(path))


def load_image_set(spec: str) -> ImageSet:
    """Reads ``spec``: a folder, an ``.npz`` file, or ``datamodule:split`` (e.g. ``digits:test``).

    Raises:
        ImageInputError: Missing path, empty folder, mixed sizes, wrong dtype or shape.
        UnknownNameError: An unknown datamodule name in ``datamodule:split``.
    """
    path = Path(spec)
    if path.is_dir():
        return ImageSet(_from_folder(path), spec)
    if path.is_file():
        if path.suffix != ".npz":
            raise ImageInputError(f"{spec}: a file input must be an .npz holding one uint8 array")
        return ImageSet(_from_npz(path), spec)
    if ":" in spec and not path.exists():
        from bench.features import to_uint8
        from datamodules import DATAMODULES

        name, split = spec.rsplit(":", 1)
        dm = DATAMODULES.get(name)()
        try:
            images = dm.split_tensors(split)["image"]
        except ValueError as err:
            raise ImageInputError(f"{spec}: {err}") from err
        return ImageSet(to_uint8(images), spec, cache_identity=(dm.identity(), split))
    raise ImageInputError(f"{spec}: no such file or folder (accepted: a folder of PNG/JPEG, an .npz, or datamodule:split)")
