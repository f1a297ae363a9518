"""Hostile image inputs for ``bench eval``: writers of bad (and awkward but valid) folders and ``.npz`` files.

Every writer takes a folder to write into and returns ``(path, name)``: the path is a complete ``--real`` /
``--fake`` input (a folder of images, or an ``.npz`` file) and the name a short label. A folder case holds a few
good 8x8 images besides the hostile file, so a refusal is due to that file alone. :func:`write_corpus` writes
all of them and says which must be accepted (``"ok"``) and which refused with one line (``"error"``), for
in-process tests and for a harness that runs the real CLI over the corpus (pair each case with
:func:`good_npz` as the other set; the default metrics ``fid,kid`` work on every ``"ok"`` case).

Everything is small and fast (the whole corpus: about 0.6 MiB, well under a second): the decompression bombs
are 1-bit PNGs of up to 20000x20000 pixels written row by row through zlib (under 50 KiB each on disk, never
more than one 2.5 KiB row uncompressed in memory).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 8  # images are SIZE x SIZE
GOOD_COUNT = 4  # images of a case folder (hostile ones included)


def _gray(seed: int, count: int = GOOD_COUNT) -> np.ndarray:  # (count, SIZE, SIZE) uint8
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE), dtype=np.uint8)


def _rgb(seed: int, count: int = GOOD_COUNT) -> np.ndarray:  # (count, SIZE, SIZE, 3) uint8
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def _folder(root: Path, name: str, good: int = GOOD_COUNT - 1) -> Path:
    """A new folder ``root/name`` holding ``good`` valid 8x8 grayscale PNGs."""
    folder = root / name
    folder.mkdir(parents=True)
    for i, image in enumerate(_gray(1, good)):
        Image.fromarray(image, mode="L").save(folder / f"good{i}.png")
    return folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: Callable[[int], bytes]) -> bytes:
    """A PNG written by hand, ``rows(y)`` giving the raw bytes of row ``y`` (without the filter byte).

    Compressed row by row, so a huge all-zero image never exists in memory at full size.
    """
    comp, parts = zlib.compressobj(9), []
    for y in range(height):
        parts.append(comp.compress(b"\x00" + rows(y)))
    parts.append(comp.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG of ``values``: (H, W) uint16 grayscale or (H, W, 3) uint16 RGB."""
    values = np.asarray(values, dtype=">u2")
    color_type = 0 if values.ndim == 2 else 2
    return png_bytes(values.shape[1], values.shape[0], 16, color_type, lambda y: values[y].tobytes())


def _bomb(root: Path, name: str, side: int) -> tuple[Path, str]:
    folder = _folder(root, name)
    row = bytes((side + 7) // 8)
    (folder / "bomb.png").write_bytes(png_bytes(side, side, 1, 0, lambda y: row))
    return folder, name


# ---- image folders that must be refused -------------------------------------------------------------------


def truncated_png(root: Path) -> tuple[Path, str]:
    """A PNG cut in the middle of its pixel data (Pillow only fails when it decodes)."""
    folder = _folder(root, "truncated_png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8), mode="L").save(buf, "PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return folder, "truncated_png"


def text_as_png(root: Path) -> tuple[Path, str]:
    """A text file named ``.png``."""
    folder = _folder(root, "text_as_png")
    (folder / "notes.png").write_text("this is not an image\n")
    return folder, "text_as_png"


def empty_png(root: Path) -> tuple[Path, str]:
    """A zero-byte ``.png``."""
    folder = _folder(root, "empty_png")
    (folder / "empty.png").write_bytes(b"")
    return folder, "empty_png"


def bomb_png(root: Path) -> tuple[Path, str]:
    """A 20000x20000 1-bit PNG (4e8 pixels, over twice Pillow's limit: Pillow refuses it when opening)."""
    return _bomb(root, "bomb_png", 20000)


def warning_bomb_png(root: Path) -> tuple[Path, str]:
    """A 10000x10000 1-bit PNG (1e8 pixels: Pillow only warns, the loader must refuse)."""
    return _bomb(root, "warning_bomb_png", 10000)


def large_png(root: Path) -> tuple[Path, str]:
    """A 9000x9000 1-bit PNG (8.1e7 pixels: under Pillow's limit, over the loader's 2**26)."""
    return _bomb(root, "large_png", 9000)


def broken_symlink(root: Path) -> tuple[Path, str]:
    """A ``.png`` symbolic link to a file that does not exist."""
    folder = _folder(root, "broken_symlink")
    os.symlink(folder / "gone.png", folder / "link.png")
    return folder, "broken_symlink"


def folder_named_png(root: Path) -> tuple[Path, str]:
    """A sub-folder called ``x.png``."""
    folder = _folder(root, "folder_named_png")
    (folder / "x.png").mkdir()
    return folder, "folder_named_png"


def unreadable_png(root: Path) -> tuple[Path, str]:
    """A valid PNG without read permission (readable anyway when running as root)."""
    folder = _folder(root, "unreadable_png")
    Image.fromarray(_gray(2, 1)[0], mode="L").save(folder / "locked.png")
    (folder / "locked.png").chmod(0)
    return folder, "unreadable_png"


def rgba_transparent(root: Path) -> tuple[Path, str]:
    """RGBA PNGs, one pixel of one of them half transparent."""
    folder = root / "rgba_transparent"
    folder.mkdir()
    for i, image in enumerate(_rgb(3)):
        alpha = np.full((SIZE, SIZE, 1), 255, np.uint8)
        if i == 0:
            alpha[2, 5] = 128
        Image.fromarray(np.concatenate([image, alpha], axis=-1), mode="RGBA").save(folder / f"{i}.png")
    return folder, "rgba_transparent"


def la_transparent(root: Path) -> tuple[Path, str]:
    """A gray+alpha (LA) PNG with a fully transparent pixel among grayscale PNGs."""
    folder = _folder(root, "la_transparent")
    alpha = np.full((SIZE, SIZE), 255, np.uint8)
    alpha[0, 0] = 0
    Image.fromarray(np.stack([_gray(4, 1)[0], alpha], axis=-1), mode="LA").save(folder / "la.png")
    return folder, "la_transparent"


def palette_transparent(root: Path) -> tuple[Path, str]:
    """Palette PNGs whose tRNS entry makes palette index 0 transparent, and some pixels use it."""
    folder = root / "palette_transparent"
    folder.mkdir()
    for i in range(GOOD_COUNT):
        im = Image.fromarray(_rgb(5 + i, 1)[0], mode="RGB").quantize(16)
        im.save(folder / f"{i}.png", transparency=int(np.asarray(im)[0, 0]))
    return folder, "palette_transparent"


def mixed_sizes(root: Path) -> tuple[Path, str]:
    """8x8 PNGs and one 9x9 PNG."""
    folder = _folder(root, "mixed_sizes")
    Image.fromarray(np.zeros((9, 9), np.uint8), mode="L").save(folder / "big.png")
    return folder, "mixed_sizes"


def one_image(root: Path) -> tuple[Path, str]:
    """A folder of one image (FID and KID need 2 per set)."""
    return _folder(root, "one_image", good=1), "one_image"


def empty_folder(root: Path) -> tuple[Path, str]:
    """A folder with no image file, only a text file."""
    folder = root / "empty_folder"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here\n")
    return folder, "empty_folder"


def corrupt_newline_name(root: Path) -> tuple[Path, str]:
    """A corrupt file whose name holds a newline (the error must still be one line)."""
    folder = _folder(root, "corrupt_newline_name")
    (folder / "bad\nname.png").write_text("not an image")
    return folder, "corrupt_newline_name"


# ---- image folders that must be accepted ------------------------------------------------------------------


def png16_gray(root: Path) -> tuple[Path, str]:
    """16-bit grayscale PNGs (the 8-bit values x 257, so they equal :func:`_gray` ``(6)`` at 8 bits)."""
    folder = root / "png16_gray"
    folder.mkdir()
    for i, image in enumerate(_gray(6)):
        (folder / f"{i}.png").write_bytes(png16(image.astype(np.uint16) * 257))
    return folder, "png16_gray"


def png16_rgb(root: Path) -> tuple[Path, str]:
    """16-bit RGB PNGs (48 bits per pixel)."""
    folder = root / "png16_rgb"
    folder.mkdir()
    for i, image in enumerate(_rgb(7)):
        (folder / f"{i}.png").write_bytes(png16(image.astype(np.uint16) * 257))
    return folder, "png16_rgb"


def rgba_opaque(root: Path) -> tuple[Path, str]:
    """RGBA PNGs with alpha 255 everywhere."""
    folder = root / "rgba_opaque"
    folder.mkdir()
    for i, image in enumerate(_rgb(8)):
        rgba = np.concatenate([image, np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=-1)
        Image.fromarray(rgba, mode="RGBA").save(folder / f"{i}.png")
    return folder, "rgba_opaque"


def la_opaque(root: Path) -> tuple[Path, str]:
    """A gray+alpha (LA) PNG with alpha 255 everywhere, among grayscale PNGs."""
    folder = _folder(root, "la_opaque")
    la = np.stack([_gray(9, 1)[0], np.full((SIZE, SIZE), 255, np.uint8)], axis=-1)
    Image.fromarray(la, mode="LA").save(folder / "la.png")
    return folder, "la_opaque"


def palette(root: Path) -> tuple[Path, str]:
    """Palette (P) PNGs, no transparency, among RGB PNGs."""
    folder = root / "palette"
    folder.mkdir()
    for i, image in enumerate(_rgb(10)):
        im = Image.fromarray(image, mode="RGB")
        (im.quantize(32) if i % 2 else im).save(folder / f"{i}.png")
    return folder, "palette"


def palette_unused_transparency(root: Path) -> tuple[Path, str]:
    """Palette PNGs with a transparent palette entry that no pixel uses (so every pixel is opaque)."""
    folder = root / "palette_unused_transparency"
    folder.mkdir()
    for i, image in enumerate(_rgb(11)):
        im = Image.fromarray(image, mode="RGB").quantize(16)
        unused = next(j for j in range(256) if j not in set(np.asarray(im).ravel().tolist()))
        im.save(folder / f"{i}.png", transparency=unused)
    return folder, "palette_unused_transparency"


def bilevel(root: Path) -> tuple[Path, str]:
    """1-bit (mode ``1``) PNGs."""
    folder = root / "bilevel"
    folder.mkdir()
    for i, image in enumerate(_gray(12)):
        Image.fromarray(image > 127).save(folder / f"{i}.png")
    return folder, "bilevel"


def cmyk_jpeg(root: Path) -> tuple[Path, str]:
    """CMYK JPEGs."""
    folder = root / "cmyk_jpeg"
    folder.mkdir()
    for i, image in enumerate(_rgb(13)):
        Image.fromarray(image, mode="RGB").convert("CMYK").save(folder / f"{i}.jpg", quality=95)
    return folder, "cmyk_jpeg"


def upper_case_suffix(root: Path) -> tuple[Path, str]:
    """``.PNG`` and ``.JPEG`` files."""
    folder = root / "upper_case_suffix"
    folder.mkdir()
    for i, image in enumerate(_gray(14)):
        Image.fromarray(image, mode="L").save(folder / f"{i}.{'PNG' if i % 2 else 'JPEG'}", format="PNG")
    return folder, "upper_case_suffix"


def extra_files(root: Path) -> tuple[Path, str]:
    """Good PNGs next to files that are not images by name (ignored): ``.txt``, ``.DS_Store``, ``.npz``."""
    folder = _folder(root, "extra_files", good=GOOD_COUNT)
    (folder / "readme.txt").write_text("hi\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    np.savez(folder / "stray.npz", x=np.zeros(3))
    return folder, "extra_files"


# ---- .npz files -------------------------------------------------------------------------------------------


def good_npz(root: Path, name: str = "good.npz", count: int = 8) -> tuple[Path, str]:
    """A valid ``.npz``: ``count`` 8x8 grayscale uint8 images (N, H, W)."""
    path = root / name
    np.savez(path, images=_gray(20, count))
    return path, "good_npz"


def upper_case_npz(root: Path) -> tuple[Path, str]:
    """A valid ``.NPZ`` (upper-case suffix)."""
    path = root / "images.NPZ"
    with open(path, "wb") as fh:  # np.savez would append ".npz"
        np.savez(fh, images=_gray(21))
    return path, "upper_case_npz"


def compressed_npz(root: Path) -> tuple[Path, str]:
    """A valid ``np.savez_compressed`` file of (N, C, H, W) RGB images."""
    path = root / "compressed.npz"
    np.savez_compressed(path, images=_rgb(22).transpose(0, 3, 1, 2))
    return path, "compressed_npz"


def pickled_npz(root: Path) -> tuple[Path, str]:
    """An ``.npz`` holding an object array (loading it would unpickle)."""
    path = root / "pickled.npz"
    np.savez(path, images=np.array([{"a": 1}, None], dtype=object))
    return path, "pickled_npz"


def truncated_npz(root: Path) -> tuple[Path, str]:
    """An ``.npz`` cut in half (no zip directory)."""
    path = root / "truncated.npz"
    buf = io.BytesIO()
    np.savez(buf, images=_gray(23))
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path, "truncated_npz"


def npy_as_npz(root: Path) -> tuple[Path, str]:
    """A plain ``.npy`` file named ``.npz``."""
    path = root / "bare.npz"
    with open(path, "wb") as fh:
        np.save(fh, _gray(24))
    return path, "npy_as_npz"


def pickle_as_npz(root: Path) -> tuple[Path, str]:
    """A Python pickle named ``.npz``."""
    path = root / "pickle.npz"
    path.write_bytes(pickle.dumps({"images": [1, 2, 3]}))
    return path, "pickle_as_npz"


def float_npz(root: Path) -> tuple[Path, str]:
    """Float images in [0, 1]."""
    path = root / "float.npz"
    np.savez(path, images=_gray(25).astype(np.float32) / 255)
    return path, "float_npz"


def int64_npz(root: Path) -> tuple[Path, str]:
    """Integer images in 0..255 stored as int64."""
    path = root / "int64.npz"
    np.savez(path, images=_gray(26).astype(np.int64))
    return path, "int64_npz"


def no_array_npz(root: Path) -> tuple[Path, str]:
    """An ``.npz`` holding no array at all."""
    path = root / "no_array.npz"
    np.savez(path)
    return path, "no_array_npz"


def two_arrays_npz(root: Path) -> tuple[Path, str]:
    """An ``.npz`` holding two arrays."""
    path = root / "two.npz"
    np.savez(path, images=_gray(27), labels=np.arange(GOOD_COUNT))
    return path, "two_arrays_npz"


def zero_images_npz(root: Path) -> tuple[Path, str]:
    """Shape (0, 8, 8)."""
    path = root / "zero_images.npz"
    np.savez(path, images=np.zeros((0, SIZE, SIZE), np.uint8))
    return path, "zero_images_npz"


def zero_axis_npz(root: Path) -> tuple[Path, str]:
    """Shape (4, 0, 8): images of height 0."""
    path = root / "zero_axis.npz"
    np.savez(path, images=np.zeros((GOOD_COUNT, 0, SIZE), np.uint8))
    return path, "zero_axis_npz"


def scalar_npz(root: Path) -> tuple[Path, str]:
    """A 0-d uint8 array."""
    path = root / "scalar.npz"
    np.savez(path, images=np.uint8(7))
    return path, "scalar_npz"


def four_channel_npz(root: Path) -> tuple[Path, str]:
    """(N, H, W, 4): RGBA arrays are not accepted."""
    path = root / "rgba.npz"
    np.savez(path, images=np.zeros((GOOD_COUNT, SIZE, SIZE, 4), np.uint8))
    return path, "four_channel_npz"


def one_image_npz(root: Path) -> tuple[Path, str]:
    """One image (FID and KID need 2 per set)."""
    path = root / "one.npz"
    np.savez(path, images=_gray(28, 1))
    return path, "one_image_npz"


def huge_shape_npz(root: Path) -> tuple[Path, str]:
    """A forged ``.npy`` header claiming shape (100000, 100000, 100000, 3) uint8, with 64 bytes of data."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (100000, 100000, 100000, 3)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    path = root / "huge_shape.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", buf.getvalue() + bytes(64))
    return path, "huge_shape_npz"


def lying_shape_npz(root: Path) -> tuple[Path, str]:
    """A forged ``.npy`` header claiming shape (4, 8, 8) uint8, with only 100 of its 256 bytes of data."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (GOOD_COUNT, SIZE, SIZE)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    path = root / "lying_shape.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", buf.getvalue() + bytes(100))
    return path, "lying_shape_npz"


def not_npy_member_npz(root: Path) -> tuple[Path, str]:
    """A zip archive named ``.npz`` whose one member is a text file."""
    path = root / "text_member.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    return path, "not_npy_member_npz"


def corrupt_member_npz(root: Path) -> tuple[Path, str]:
    """A compressed ``.npz`` whose member data was overwritten (its CRC or deflate stream fails)."""
    path = root / "corrupt_member.npz"
    np.savez_compressed(path, images=_gray(29, 64))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path, "corrupt_member_npz"


def broken_symlink_npz(root: Path) -> tuple[Path, str]:
    """The input path itself is a symbolic link to a missing ``.npz``."""
    path = root / "link.npz"
    os.symlink(root / "missing.npz", path)
    return path, "broken_symlink_npz"


#: (writer, expected) of every case; ``"ok"``: accepted, ``"error"``: refused in one line.
CASES: tuple[tuple[Callable[[Path], tuple[Path, str]], str], ...] = (
    (truncated_png, "error"), (text_as_png, "error"), (empty_png, "error"), (bomb_png, "error"),
    (warning_bomb_png, "error"), (large_png, "error"), (broken_symlink, "error"), (folder_named_png, "error"),
    (rgba_transparent, "error"), (la_transparent, "error"), (palette_transparent, "error"),
    (mixed_sizes, "error"), (one_image, "error"), (empty_folder, "error"), (corrupt_newline_name, "error"),
    (png16_gray, "ok"), (png16_rgb, "ok"), (rgba_opaque, "ok"), (la_opaque, "ok"), (palette, "ok"),
    (palette_unused_transparency, "ok"), (bilevel, "ok"), (cmyk_jpeg, "ok"), (upper_case_suffix, "ok"),
    (extra_files, "ok"),
    (upper_case_npz, "ok"), (compressed_npz, "ok"), (pickled_npz, "error"), (truncated_npz, "error"),
    (npy_as_npz, "error"), (pickle_as_npz, "error"), (float_npz, "error"), (int64_npz, "error"),
    (no_array_npz, "error"), (two_arrays_npz, "error"), (zero_images_npz, "error"), (zero_axis_npz, "error"),
    (scalar_npz, "error"), (four_channel_npz, "error"), (one_image_npz, "error"), (huge_shape_npz, "error"),
    (lying_shape_npz, "error"), (not_npy_member_npz, "error"), (corrupt_member_npz, "error"),
    (broken_symlink_npz, "error"),
)


def running_as_root() -> bool:
    """Whether file permissions are ignored (root reads an unreadable file)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def write_corpus(folder: Path) -> list[tuple[str, Path, str]]:
    """Writes every case into ``folder`` (which must exist, and be empty) and returns ``(name, path, expected)``.

    ``expected`` is ``"ok"`` (the input must load and score) or ``"error"`` (one-line refusal, exit code 2).
    The unreadable-file case is included only when not running as root, where it would be readable.
    """
    cases = list(CASES) + ([] if running_as_root() else [(unreadable_png, "error")])
    out = []
    for write, expected in cases:
        path, name = write(Path(folder))
        out.append((name, path, expected))
    return out
