"""Image sets for ``bench eval``: a folder of PNG/JPEG files, an ``.npz`` holding one uint8 array, or a registered
``datamodule:split``. Everything is validated up front; problems raise :class:`ImageInputError`, one line saying
what was found, in which file, and what is accepted. No input gives a traceback or a silently changed pixel.

How image files become uint8 (grayscale ``L`` or ``RGB``):

* 8-bit ``L`` and ``RGB`` are used as they are; bilevel ``1`` becomes ``L`` with values 0 / 255; palette ``P``
  becomes ``RGB`` (also when the palette is gray: a folder must then not mix ``P`` with ``L`` files); ``CMYK``
  and ``YCbCr`` (JPEG) become ``RGB`` with Pillow's conversion.
* 16-bit data (PNG ``I;16``/``I;16B``/``I;16L``) is reduced to its high byte, ``v >> 8`` (= floor(v / 256)):
  65535 → 255, 32896 → 128, and an 8-bit image stored at 16 bits (v × 257) gives back exactly the 8-bit values.
  This is what Pillow itself does when it opens a 16-bit RGB PNG (it has no 48-bit mode), and what torchvision
  (``to_dtype(..., scale=True)``) and scikit-image (``img_as_ubyte``) do, so 16-bit gray and 16-bit RGB files
  agree with each other and with those tools. It differs from round(v / 257) by at most 1 (e.g. 65280 → 255,
  not 254), and only on values that are not an 8-bit value × 257. Before this, ``convert("L")`` clipped every
  value above 255 to 255.
* 32-bit integer ``I`` images are taken as 8-bit if every value is in 0..255, as 16-bit if every value is in
  0..65535 (then ``v >> 8``), and refused otherwise; the choice is made per file, from its values. Float ``F``
  images are refused: there is no agreed range to map to 8 bits.
* An alpha channel (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, or a PNG ``tRNS`` transparent
  colour / palette entry) is dropped when every pixel is fully opaque (alpha 255); a file with any transparent
  pixel is refused, because what it looks like depends on the background it is shown on (flatten it first).

Hostile files are refused naming the file: corrupt or truncated images (decoded inside the check, not later),
files that are not images, images over :data:`MAX_PIXELS` pixels (checked from the header, before decoding;
Pillow's decompression-bomb warning is an error here too), broken symbolic links, sub-folders whose name ends in
an image suffix, and unreadable files. An ``.npz`` is checked from its zip directory and ``.npy`` header (dtype,
shape, size) before its data is read, so a pickled object array, a lying or huge shape, or a truncated archive
never reaches ``numpy``'s loader. Suffixes are matched case-insensitively (``.PNG``, ``.NPZ``).
"""

from __future__ import annotations

import inspect
import os
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Most pixels (width × height) one image may have: 2**26 (8192 × 8192), below Pillow's decompression-bomb limit.
MAX_PIXELS = 2**26
#: Pillow modes read from image files; anything else is refused.
ACCEPTED_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "PA", "RGBa", "La", "RGBX", "CMYK", "YCbCr",
                  "I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


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


def _check_shape(shape: tuple[int, ...], source: str) -> None:
    """Refuses shapes that hold no image, or too large an image or set, before any data is read."""
    if len(shape) not in (3, 4):
        raise ImageInputError(f"{source}: expected an array (N, H, W), (N, H, W, C) or (N, C, H, W), found shape "
                              f"{shape}")
    if shape[0] == 0:
        raise ImageInputError(f"{source}: holds no images (shape {shape}); at least 2 are needed")
    if 0 in shape:
        raise ImageInputError(f"{source}: found shape {shape} with a zero-size axis; images must have H, W >= 1")
    spatial = shape[1:3] if len(shape) == 3 or shape[-1] in (1, 3) else shape[2:4]
    if spatial[0] * spatial[1] > MAX_PIXELS:
        raise ImageInputError(f"{source}: images of {spatial[0]}x{spatial[1]} pixels (shape {shape}) are over the "
                              f"limit of {MAX_PIXELS} pixels per image")
    nbytes, memory = int(np.prod(shape, dtype=np.float64)), _physical_memory()
    if memory is not None and nbytes > memory:
        raise ImageInputError(f"{source}: shape {shape} needs {nbytes / 2**30:.1f} GiB, more than this machine's "
                              f"{memory / 2**30:.1f} GiB of memory")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def _check_dtype(dtype: np.dtype, source: str) -> None:
    if dtype.hasobject:
        raise ImageInputError(f"{source}: holds Python objects (a pickled {dtype} array), which are never loaded; "
                              "save one uint8 array with np.savez")
    if dtype != np.uint8:
        as_int = " (convert with .astype(np.uint8) if every value is in 0..255)"
        hint = {"f": " (convert floats in [0, 1] with (x * 255).round().astype(np.uint8))", "i": as_int,
                "u": as_int}.get(dtype.kind, "")
        raise ImageInputError(f"{source}: images must be uint8 in [0, 255], found dtype {dtype}{hint}")


def _from_array(array: np.ndarray, source: str) -> torch.Tensor:
    if not isinstance(array, np.ndarray):
        raise ImageInputError(f"{source}: expected a numpy array of uint8 images, found {type(array).__name__}")
    _check_dtype(array.dtype, source)
    _check_shape(array.shape, source)
    if array.ndim == 3:
        array = array[..., None]  # (N, H, W) -> (N, H, W, 1)
    if array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif array.shape[1] not in (1, 3):
        raise ImageInputError(f"{source}: found shape {array.shape}; one axis (1 or last) must be 1 or 3 channels")
    return torch.from_numpy(np.ascontiguousarray(array))


def _read_npy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> np.ndarray:
    """The array of one ``.npy`` zip member; dtype, shape and size are checked from its header first."""
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, fortran, dtype = read_header[version](f) if version in read_header else (None, None, None)
        except ValueError as err:
            raise ImageInputError(f"{source}: member {info.filename!r} is not a valid .npy array ({err})") from err
        if shape is None:
            raise ImageInputError(f"{source}: .npy format version {version} is not supported; save with np.savez")
        _check_dtype(dtype, source)
        _check_shape(tuple(shape), source)
        nbytes = int(np.prod(shape))
        if info.file_size - f.tell() < nbytes:
            raise ImageInputError(f"{source}: the array header says shape {tuple(shape)} ({nbytes} bytes) but the "
                                  f"archive holds only {info.file_size - f.tell()} bytes of data (truncated or forged)")
        flat = np.empty(nbytes, dtype=np.uint8)
        view, got = memoryview(flat), 0
        while got < nbytes:
            chunk = f.readinto(view[got:])
            if not chunk:
                break
            got += chunk
        if got < nbytes:
            raise ImageInputError(f"{source}: truncated: {got} of the {nbytes} bytes of shape {tuple(shape)} present")
    return flat.reshape(shape, order="F" if fortran else "C")


def _from_npz(path: Path) -> torch.Tensor:
    source = str(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_NPY_MAGIC))
    except OSError as err:
        raise ImageInputError(f"{source}: cannot be read ({err.strerror or err})") from err
    if magic.startswith(_NPY_MAGIC):
        raise ImageInputError(f"{source}: is an .npy file (one bare array), not an .npz archive; save it with "
                              "np.savez(path, images=array) or rename it")
    if not magic.startswith(_ZIP_MAGIC):
        raise ImageInputError(f"{source}: not an .npz archive (no zip signature); save one uint8 array with np.savez")
    try:
        with zipfile.ZipFile(path) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
            names = [info.filename.removesuffix(".npy") for info in members]
            if len(members) != 1:
                raise ImageInputError(f"{source}: an .npz must hold exactly one array, found {len(members)}: {names}")
            if not members[0].filename.endswith(".npy"):
                raise ImageInputError(f"{source}: member {members[0].filename!r} is not an .npy array; "
                                      "save one uint8 array with np.savez")
            array = _read_npy_member(zf, members[0], source)
    except ImageInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as err:  # RuntimeError: an encrypted member; NotImplementedError: a compression
        raise ImageInputError(f"{source}: corrupt or truncated .npz ({type(err).__name__}: {err})") from err
    return _from_array(array, source)


def _pixels(im, name: str) -> np.ndarray:
    """A decoded Pillow image as uint8, (H, W) grayscale or (H, W, 3) RGB, by the rules of the module docstring."""
    mode = im.mode
    if mode == "F":
        raise ImageInputError(f"{name}: mode F (32-bit float) images are not accepted; save it as 8-bit or 16-bit "
                              "PNG/JPEG")
    if mode not in ACCEPTED_MODES:
        raise ImageInputError(f"{name}: image mode {mode} is not supported; accepted: {', '.join(ACCEPTED_MODES)}")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        with_alpha = np.asarray(im if mode in _ALPHA_MODES else im.convert("RGBA"))  # (H, W, 2 or 4)
        transparent = int((with_alpha[..., -1] < 255).sum())
        if transparent:
            raise ImageInputError(f"{name}: has transparent pixels ({transparent} of {with_alpha[..., -1].size} with "
                                  "alpha < 255); flatten it onto a background first (accepted: fully opaque alpha, "
                                  "which is dropped)")
        if mode == "P":  # a tRNS palette entry no pixel uses; Pillow only converts such images through RGBA
            return np.ascontiguousarray(with_alpha[..., :3])
    if mode in ("L", "RGB"):
        return np.asarray(im)
    if mode in ("LA", "La"):
        return np.ascontiguousarray(np.asarray(im)[..., 0])  # alpha is 255 everywhere, so La = LA
    if mode == "1":
        return np.asarray(im.convert("L"))  # 0 / 255
    if mode.startswith("I;16"):
        return (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)  # high byte, see the module docstring
    if mode == "I":
        values = np.asarray(im)  # int32
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi > 65535:
            raise ImageInputError(f"{name}: mode I (32-bit integer) values span [{lo}, {hi}]; accepted: 0..255 "
                                  "(8-bit) or 0..65535 (16-bit)")
        return values.astype(np.uint8) if hi <= 255 else (values >> 8).astype(np.uint8)
    return np.asarray(im.convert("RGB"))  # P, PA, RGBA, RGBa, RGBX, CMYK, YCbCr


def _read_image(f: Path) -> np.ndarray:
    """One image file as uint8 (H, W) or (H, W, 3); every way the file can be bad is an ImageInputError."""
    from PIL import Image

    name = str(f)
    if f.is_symlink() and not f.exists():
        raise ImageInputError(f"{name}: broken symbolic link (to {os.readlink(f)!r}, which does not exist); "
                              "remove it or fix its target")
    if f.is_dir():
        raise ImageInputError(f"{name}: is a folder, not an image file; an image folder must be flat (no "
                              f"sub-folders named *{'/*'.join(IMAGE_SUFFIXES)})")
    if not f.is_file():
        raise ImageInputError(f"{name}: not a regular file; accepted: PNG or JPEG files")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise ImageInputError(f"{name}: {width}x{height} is {width * height} pixels, over the limit of "
                                          f"{MAX_PIXELS} per image; downscale it first")
                im.load()  # decoding happens here: a truncated file fails now, not later
                return _pixels(im, name)
    except ImageInputError:
        raise
    except PermissionError as err:
        raise ImageInputError(f"{name}: cannot be read (permission denied); make it readable") from err
    except Image.UnidentifiedImageError as err:
        raise ImageInputError(f"{name}: not a PNG/JPEG image (Pillow cannot identify it); accepted: PNG or JPEG "
                              "files") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageInputError(f"{name}: refused as a possible decompression bomb ({err}); images may have at most "
                              f"{MAX_PIXELS} pixels") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, MemoryError) as err:
        raise ImageInputError(f"{name}: corrupt or truncated image ({type(err).__name__}: {err}); re-save or "
                              "remove it") from err


def _from_folder(path: Path) -> torch.Tensor:
    try:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as err:
        raise ImageInputError(f"{path}: the folder cannot be listed ({err.strerror or err})") from err
    if not files:
        raise ImageInputError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
    arrays, sizes = [], set()
    for f in files:
        array = _read_image(f)  # (H, W) or (H, W, 3)
        arrays.append(array)
        sizes.add(((array.shape[1], array.shape[0]), "L" if array.ndim == 2 else "RGB"))
    if len(sizes) > 1:
        found = ", ".join(f"{w}x{h} {m}" for (w, h), m in sorted(sizes))
        raise ImageInputError(f"{path}: images must share one size and mode (grayscale or RGB), found {found}")
    return _from_array(np.stack(arrays), str(path))


def load_image_set(spec: str, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """Reads ``spec``: a folder, an ``.npz`` file, or ``datamodule:split`` (e.g. ``digits:test``).

    Args:
        spec: The source. data_dir: For ``datamodule:split``, the datamodule's ``data_dir`` (where its files are;
            None: its default).

    Raises:
        ImageInputError: Missing path, empty folder, a bad image file (corrupt, truncated, transparent, too
            large, unsupported mode, broken link, ...), mixed sizes, a bad ``.npz`` (wrong dtype or shape,
            pickled, truncated, an ``.npy``), or an unknown split.
        UnknownNameError: An unknown datamodule name in ``datamodule:split``.
        DataUnavailableError: The datamodule's files are missing.
    """
    path = Path(spec)
    if path.is_dir():
        return ImageSet(_from_folder(path), spec)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise ImageInputError(f"{spec}: a file input must be an .npz holding one uint8 array")
        return ImageSet(_from_npz(path), spec)
    if path.is_symlink():
        raise ImageInputError(f"{spec}: broken symbolic link (to {os.readlink(path)!r}, which does not exist)")
    if path.exists():
        raise ImageInputError(f"{spec}: not a regular file or folder (accepted: a folder of PNG/JPEG, an .npz)")
    if ":" in spec:
        from bench.features import to_uint8
        from datamodules import DATAMODULES

        name, split = spec.rsplit(":", 1)
        cls = DATAMODULES.get(name)
        if data_dir is not None and "data_dir" not in inspect.signature(cls.__init__).parameters:
            raise ImageInputError(f"{spec}: datamodule {name!r} takes no data_dir (its data is built in); drop "
                                  f"--data-dir")
        dm = cls(data_dir=str(data_dir)) if data_dir is not None else cls()
        try:
            images = dm.split_tensors(split)["image"]
        except InputError:
            raise
        except ValueError as err:
            raise ImageInputError(f"{spec}: {err}") from err
        return ImageSet(to_uint8(images), spec, cache_identity=(dm.identity(), split))
    raise ImageInputError(f"{spec}: no such file or folder (accepted: a folder of PNG/JPEG, an .npz, or datamodule:split)")
