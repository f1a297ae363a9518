"""The real Fashion-MNIST (Xiao et al., 2017): 70,000 grayscale 28×28 images of 10 clothing classes.

Sources, tried in order:
1. ``data_dir`` if given, else ``$FASHION_MNIST_DIR``, else the files of the Debian package
   ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist`` (the original IDX ``*-ubyte.gz`` files);
2. the Hugging Face hub dataset ``zalando-datasets/fashion_mnist`` through ``datasets`` (when reachable);
3. otherwise a :class:`DataUnavailableError` that says both ways to get the data.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from datamodules.base import BenchDataModule, DataSpec, DataUnavailableError, resize_images
from datamodules.registry import DATAMODULES

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_ID = "zalando-datasets/fashion_mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) as written by LeCun's MNIST and Zalando's Fashion-MNIST.

    Raises:
        ValueError: If the file is not a valid unsigned-byte IDX file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {array.size} values")
    return array.reshape(shape)


def _load_idx_dir(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, (img_name, lbl_name) in _FILES.items():
        images, labels = read_idx(root / img_name), read_idx(root / lbl_name)
        if len(images) != len(labels):
            raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
        out[split] = (images, labels)
    return out


def _load_from_hub() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import datasets

    ds = datasets.load_dataset(HUB_ID)
    out = {}
    for split in ("train", "test"):
        images = np.stack([np.asarray(im, dtype=np.uint8) for im in ds[split]["image"]])
        out[split] = (images, np.asarray(ds[split]["label"], dtype=np.int64))
    return out


def find_fashion_mnist(data_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Loads the train (60k) and test (10k) splits as uint8 (N, 28, 28) images and (N,) labels.

    Raises:
        DataUnavailableError: If no local copy exists and the hub cannot be reached.
    """
    if data_dir:  # an explicit folder is the only place looked at: never silently load another copy
        candidates = [Path(data_dir)]
    else:
        candidates = [Path(p) for p in (os.environ.get("FASHION_MNIST_DIR"),) if p] + [DEBIAN_DIR]
    for root in candidates:
        if all((root / name).exists() for pair in _FILES.values() for name in pair):
            return _load_idx_dir(root)
    if data_dir:
        raise DataUnavailableError(f"fashion-mnist: {data_dir} does not hold the four *-ubyte.gz files {_FILES}")
    try:
        return _load_from_hub()
    except Exception as err:  # any failure of the hub path means: not reachable from here
        raise DataUnavailableError(
            "fashion-mnist: the data was not found locally and the hub is not reachable "
            f"({type(err).__name__}). Either install the Debian package (`sudo apt-get install dataset-fashion-mnist`, "
            f"files in {DEBIAN_DIR}) or put the four original *-ubyte.gz files in a folder and pass "
            "data_dir=... / set FASHION_MNIST_DIR, or go online so `datasets` can fetch "
            f"'{HUB_ID}'."
        ) from err


@DATAMODULES.register("fashion-mnist")
class FashionMNISTDataModule(BenchDataModule):
    """Fashion-MNIST with the official 60k/10k split; validation is the last ``val_size`` train images.

    Args:
        data_dir: Folder with the original IDX files (default: ``$FASHION_MNIST_DIR`` or the Debian package's).
        image_size: Side the images are resized to (antialiased bilinear); 28 keeps the native size.
        val_size: Number of train images held out (from the end of the official train split) for validation.
        train_subset: If > 0, only the first this-many train images are used (for CPU budgets); recorded.
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int = 28,
        val_size: int = 5000,
        train_subset: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.image_size = image_size
        self.val_size = val_size
        self.train_subset = train_subset

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        raw = find_fashion_mnist(self.data_dir)

        def to_tensors(images: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
            x = torch.from_numpy(images.copy()).float().div(255.0).unsqueeze(1)  # (N, 1, 28, 28)
            return {"image": resize_images(x, self.image_size), "label": torch.from_numpy(labels.astype(np.int64))}

        train_images, train_labels = raw["train"]
        n_train = len(train_images) - self.val_size
        train = to_tensors(train_images[:n_train], train_labels[:n_train])
        if self.train_subset > 0:
            train = {k: v[: self.train_subset] for k, v in train.items()}
        return {
            "train": train,
            "val": to_tensors(train_images[n_train:], train_labels[n_train:]),
            "test": to_tensors(*raw["test"]),
        }

    def data_spec(self) -> DataSpec:
        return DataSpec(image_shape=(1, self.image_size, self.image_size), num_classes=10)
