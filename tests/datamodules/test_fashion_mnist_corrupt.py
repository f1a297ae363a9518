"""datamodules.fashion_mnist on corrupt files: every one is a one-line DataUnavailableError naming the file and the
fix (reinstall dataset-fashion-mnist, or point data_dir at the four original IDX .gz files), never a traceback.

The corrupt copies are made here from small valid IDX files (tests/datamodules/test_fashion_mnist.py's
``write_idx``); one test truncates a real file of the Debian package when it is installed.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import datamodules.fashion_mnist as fm
from bench.errors import InputError
from datamodules.base import DataUnavailableError
from datamodules.fashion_mnist import FashionMNISTDataModule, read_idx
from tests.datamodules.test_fashion_mnist import write_idx

IMAGES = "train-images-idx3-ubyte.gz"


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """Four small valid *-ubyte.gz files (12 train and 4 test 28x28 images)."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / IMAGES, rng.integers(0, 256, (12, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", (np.arange(12) % 10).astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3, 4], dtype=np.uint8))
    return tmp_path


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _header(shape: tuple[int, ...], magic: bytes = b"\x00\x00\x08") -> bytes:
    return magic + bytes([len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def _not_gzip(path: Path) -> None:
    path.write_bytes(b"this is not a gzip stream at all")


def _truncated_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_deflate(path: Path) -> None:
    # a gzip header without a file name, then a deflate block of the reserved type 3 (first byte 0b111)
    path.write_bytes(bytes.fromhex("1f8b08000000000000ff") + b"\x07" + b"\x00" * 20)


def _bad_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the trailer
    path.write_bytes(bytes(data))


def _huge_header(path: Path) -> None:
    path.write_bytes(_gz(_header((60000, 2**31, 2**31)) + b"\x00" * 100))


def _wrong_magic(path: Path) -> None:
    path.write_bytes(_gz(_header((12, 28, 28), magic=b"\x00\x00\x0d") + b"\x00" * (12 * 28 * 28)))


def _short_header(path: Path) -> None:
    path.write_bytes(_gz(b"\x00\x00\x08\x03\x00\x00"))


def _too_many_values(path: Path) -> None:
    path.write_bytes(_gz(_header((12, 28, 28)) + b"\x00" * (12 * 28 * 28 + 1)))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


#: corruption -> (what it does to the file, words of the message)
CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "not-gzip": (_not_gzip, "BadGzipFile"),
    "truncated-gzip": (_truncated_gzip, "EOFError"),
    "bad-deflate": (_bad_deflate, "zlib.error: Error -3 while decompressing data: invalid block type"),
    "bad-crc": (_bad_crc, "CRC check failed"),
    "huge-header": (_huge_header, "header saying shape (60000, 2147483648, 2147483648)"),
    "wrong-magic": (_wrong_magic, "not an unsigned-byte IDX file (magic 0000"),
    "short-header": (_short_header, "ends inside its header"),
    "too-many-values": (_too_many_values, "holds more values"),
    "empty": (_empty, "too short"),
    "directory": (_directory, "IsADirectoryError"),
}


def _check(err: InputError, path: Path, needle: str) -> None:
    message = str(err)
    assert "\n" not in message and str(path) in message and needle in message, message
    assert "apt-get install --reinstall dataset-fashion-mnist" in message and "data_dir" in message, message
    assert IMAGES in message  # the four original file names are listed


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_read_idx_on_corrupt_file(name: str, idx_folder: Path) -> None:
    corrupt, needle = CORRUPTIONS[name]
    path = idx_folder / IMAGES
    corrupt(path)
    with pytest.raises(DataUnavailableError) as info:
        read_idx(path)
    _check(info.value, path, needle)
    assert isinstance(info.value, ValueError)  # read_idx's documented ValueError, still


@pytest.mark.parametrize("name", ["truncated-gzip", "huge-header", "wrong-magic"])
def test_datamodule_with_a_corrupt_file_in_data_dir(name: str, idx_folder: Path) -> None:
    """The datamodule's setup surfaces the same one-line error (the CLI prints it and exits 2)."""
    corrupt, needle = CORRUPTIONS[name]
    corrupt(idx_folder / IMAGES)
    with pytest.raises(DataUnavailableError) as info:
        FashionMNISTDataModule(data_dir=str(idx_folder)).setup()
    _check(info.value, idx_folder / IMAGES, needle)


def test_huge_header_allocates_nothing_big(tmp_path: Path) -> None:
    """A header claiming 2**93 bytes is refused after reading what the file really holds (no giant buffer)."""
    path = tmp_path / "x-idx3-ubyte.gz"
    _huge_header(path)
    tracemalloc.start()
    try:
        with pytest.raises(DataUnavailableError, match="only 100 values"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_plain_idx_too_short_for_its_header(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(_header((5,)) + b"\x01\x02")
    with pytest.raises(DataUnavailableError, match="header saying shape \\(5,\\) \\(5 values\\) but holds only 2"):
        read_idx(path)


@pytest.mark.parametrize(
    "name, array, needle",
    [
        ("train-labels-idx1-ubyte.gz", np.full(12, 10, dtype=np.uint8), "holds label 10"),
        ("train-labels-idx1-ubyte.gz", np.zeros((12, 2), dtype=np.uint8), "not (N,) labels"),
        ("train-images-idx3-ubyte.gz", np.zeros((12, 784), dtype=np.uint8), "not (N, H, W) images"),
        ("train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8), "12 images but 11 labels"),
    ],
)
def test_valid_idx_files_of_the_wrong_content(idx_folder: Path, name: str, array: np.ndarray, needle: str) -> None:
    write_idx(idx_folder / name, array)
    with pytest.raises(DataUnavailableError, match="fashion-mnist: ") as info:
        FashionMNISTDataModule(data_dir=str(idx_folder)).setup()
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not (fm.DEBIAN_DIR / IMAGES).exists(), reason=f"{fm.DEBIAN_DIR / IMAGES} not installed")
def test_truncated_copy_of_the_real_file(tmp_path: Path) -> None:
    """The Debian package's train images, cut in half: the truncated gzip stream is named, not a traceback."""
    path = tmp_path / IMAGES
    shutil.copy(fm.DEBIAN_DIR / IMAGES, path)
    _truncated_gzip(path)
    with pytest.raises(DataUnavailableError) as info:
        read_idx(path)
    _check(info.value, path, "EOFError")
