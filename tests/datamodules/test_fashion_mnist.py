"""datamodules.fashion_mnist: the IDX reader, local-folder loading, the real Debian files, and the offline error."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.fashion_mnist as fm
from datamodules.base import DataUnavailableError
from datamodules.fashion_mnist import FashionMNISTDataModule, read_idx


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Writes a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(data)
    return path


@pytest.fixture
def idx_folder(tmp_path):
    """Four tiny *-ubyte.gz files: 20 train and 6 test 28x28 images with labels, as in the original release."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(20) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([9, 8, 7, 6, 5, 4], dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(tmp_path / name, array)
    return tmp_path, arrays


@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_read_idx_roundtrip(tmp_path, name):
    """Gzipped and plain IDX files read back to the same array, shape and dtype."""
    array = np.random.default_rng(1).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    out = read_idx(write_idx(tmp_path / name, array))
    assert out.dtype == np.uint8 and out.shape == (3, 5, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_1d(tmp_path):
    """A label file (1-D) reads as (N,)."""
    labels = np.arange(7, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l-idx1-ubyte.gz", labels)), labels)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x09\x01\x00\x00\x00\x02\x01\x02",  # dtype code 0x09 (signed byte)
        b"\x01\x00\x08\x01\x00\x00\x00\x02\x01\x02",  # non-zero leading bytes
        b"\x00\x08",  # too short
        b"\x00\x08\x01\x00\x00\x00\x05\x01\x02",  # header says 5 values, file holds 2
    ],
)
def test_read_idx_rejects_invalid_files(tmp_path, content):
    """Bad magic, a short file or a size mismatch raise ValueError."""
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        read_idx(path)


def test_datamodule_on_local_folder(idx_folder):
    """data_dir loads the files: val is the end of train, pixels are uint8/255, labels kept, in order."""
    folder, arrays = idx_folder
    dm = FashionMNISTDataModule(data_dir=str(folder), val_size=4)
    train, val, test = (dm.split_tensors(s) for s in ("train", "val", "test"))
    assert train["image"].shape == (16, 1, 28, 28) and val["image"].shape == (4, 1, 28, 28)
    assert test["image"].shape == (6, 1, 28, 28)
    train_images = torch.from_numpy(arrays["train-images-idx3-ubyte.gz"]).float().div(255).unsqueeze(1)
    assert torch.equal(train["image"], train_images[:16]) and torch.equal(val["image"], train_images[16:])
    assert train["label"].tolist() == [i % 10 for i in range(16)] and train["label"].dtype == torch.long
    assert test["label"].tolist() == [9, 8, 7, 6, 5, 4]
    assert 0 <= train["image"].min() and train["image"].max() <= 1
    assert dm.data_spec().image_shape == (1, 28, 28) and dm.data_spec().num_classes == 10


def test_datamodule_train_subset_and_resize(idx_folder):
    """train_subset keeps the first images of train only; image_size resizes every split."""
    folder, _ = idx_folder
    full = FashionMNISTDataModule(data_dir=str(folder), val_size=4)
    dm = FashionMNISTDataModule(data_dir=str(folder), val_size=4, train_subset=10, image_size=32)
    assert dm.split_tensors("train")["image"].shape == (10, 1, 32, 32)
    assert torch.equal(dm.split_tensors("train")["label"], full.split_tensors("train")["label"][:10])
    assert len(dm.split_tensors("val")["label"]) == 4 and len(dm.split_tensors("test")["label"]) == 6
    assert dm.split_tensors("test")["image"].shape[1:] == (1, 32, 32)


def test_env_var_folder(idx_folder, monkeypatch):
    """$FASHION_MNIST_DIR is used when data_dir is not given."""
    folder, _ = idx_folder
    monkeypatch.setenv("FASHION_MNIST_DIR", str(folder))
    assert len(FashionMNISTDataModule(val_size=2).split_tensors("test")["label"]) == 6


def test_missing_data_dir_raises(idx_folder, tmp_path, monkeypatch):
    """An explicit folder without the files raises DataUnavailableError, even when another copy exists elsewhere."""
    folder, _ = idx_folder
    monkeypatch.setattr(fm, "DEBIAN_DIR", folder)  # a valid copy in the default place
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with pytest.raises(DataUnavailableError, match="ubyte"):
        FashionMNISTDataModule(data_dir=str(wrong)).setup()


def test_missing_data_dir_raises_without_other_copies(tmp_path, monkeypatch):
    """With no other copy anywhere, an explicit empty folder raises DataUnavailableError without trying the hub."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nothing-here")
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)

    def hub_must_not_be_called():
        raise AssertionError("the hub was tried although data_dir was given")

    monkeypatch.setattr(fm, "_load_from_hub", hub_must_not_be_called)
    with pytest.raises(DataUnavailableError, match="ubyte"):
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup()


@pytest.mark.skipif(
    not all((fm.DEBIAN_DIR / n).exists() for pair in fm._FILES.values() for n in pair),
    reason=f"real Fashion-MNIST not installed in {fm.DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    """The Debian package's files: 55,000 / 5,000 / 10,000 images of 1x28x28 in [0, 1], 10 balanced classes."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    dm = FashionMNISTDataModule()
    sizes = {s: len(dm.split_tensors(s)["label"]) for s in ("train", "val", "test")}
    assert sizes == {"train": 60000 - 5000, "val": 5000, "test": 10000}
    test = dm.split_tensors("test")
    assert test["image"].shape == (10000, 1, 28, 28)
    assert 0 <= test["image"].min() and test["image"].max() <= 1
    assert torch.bincount(test["label"]).tolist() == [1000] * 10  # the official test set is balanced
    assert sorted(dm.split_tensors("train")["label"].unique().tolist()) == list(range(10))


def test_offline_without_files_raises_helpful_error(tmp_path, monkeypatch):
    """No local files and an unreachable hub give DataUnavailableError naming the apt package and the hub id."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(fm, "DEBIAN_DIR", empty)
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)

    def unreachable():
        raise ConnectionError("no route to the hub")

    monkeypatch.setattr(fm, "_load_from_hub", unreachable)
    with pytest.raises(DataUnavailableError) as info:
        FashionMNISTDataModule().setup()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert fm.HUB_ID in message and fm.HUB_ID == "zalando-datasets/fashion_mnist"
    assert isinstance(info.value.__cause__, ConnectionError)
