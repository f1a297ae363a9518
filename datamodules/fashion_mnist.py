"""The real Fashion-MNIST (Xiao et al., 2017): 70,000 grayscale 28×28 images of 10 clothing classes.

Sources, tried in order:
1. ``data_dir`` if given, else ``$FASHION_MNIST_DIR``, else the files of the Debian package
   ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist`` (the original IDX ``*-ubyte.gz`` files);
2. the Hugging Face hub dataset ``zalando-datasets/fashion_mnist`` through ``datasets`` (when reachable);
3. otherwise a :class:`DataUnavailableError` that says both ways to get the data.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
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


#: How to get intact files, appended to every message about a bad one.
FIX = (
    "reinstall the Debian package (`sudo apt-get install --reinstall dataset-fashion-mnist`, files in "
    f"{DEBIAN_DIR}) or point data_dir / $FASHION_MNIST_DIR at a folder with the four original IDX files "
    f"{', '.join(name for pair in _FILES.values() for name in pair)}"
)
_CHUNK = 1 << 20


def _bad_file(path: Path, what: str) -> DataUnavailableError:
    return DataUnavailableError(f"fashion-mnist: {path} {what}; {FIX}")


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) as written by LeCun's MNIST and Zalando's Fashion-MNIST.

    The header is read first and the body in chunks, never more than the header's shape announces, so a header
    claiming an enormous shape allocates nothing beyond the bytes the file really holds.

    Raises:
        DataUnavailableError: (a ValueError) The file cannot be read (a folder, a broken or truncated gzip stream)
            or is not a valid unsigned-byte IDX file (magic, header, size); one line naming it and how to fix it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise _bad_file(path, f"is too short to be an IDX file ({len(head)} bytes)")
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08 or ndim == 0:
                raise _bad_file(
                    path, f"is not an unsigned-byte IDX file (magic {head.hex()}; expected 000008 and 1 to 255 "
                    "dimensions)"
                )
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise _bad_file(path, f"ends inside its header ({ndim} dimensions announced)")
            shape = struct.unpack(f">{ndim}I", dims)
            size = math.prod(shape)  # a Python int: cannot overflow, unlike np.prod
            chunks, total = [], 0
            while total <= size:  # reads at most size + one chunk, whatever the header claims
                chunk = f.read(min(_CHUNK, size - total + 1))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a truncated stream is EOFError
        first = (str(err).splitlines() or [""])[0]
        kind = "zlib.error" if isinstance(err, zlib.error) else type(err).__name__  # its bare name is "error"
        raise _bad_file(path, f"cannot be read ({kind}: {first or 'no message'})") from err
    if total != size:
        more = "more" if total > size else f"only {total}"
        raise _bad_file(path, f"has a header saying shape {shape} ({size} values) but holds {more} values")
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(shape)


def _load_idx_dir(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, (img_name, lbl_name) in _FILES.items():
        images, labels = read_idx(root / img_name), read_idx(root / lbl_name)
        if images.ndim != 3:
            raise _bad_file(root / img_name, f"holds an array of shape {images.shape}, not (N, H, W) images")
        if labels.ndim != 1:
            raise _bad_file(root / lbl_name, f"holds an array of shape {labels.shape}, not (N,) labels")
        if len(images) != len(labels):
            raise _bad_file(root, f"holds {len(images)} images but {len(labels)} labels in the {split} split")
        if len(labels) and int(labels.max()) >= len(CLASSES):
            raise _bad_file(root / lbl_name, f"holds label {int(labels.max())}; Fashion-MNIST labels are 0 to 9")
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
        missing = [name for pair in _FILES.values() for name in pair if not (Path(data_dir) / name).exists()]
        raise DataUnavailableError(f"fashion-mnist: {data_dir} lacks {', '.join(missing)}; {FIX}")
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

    data_source = "local: Debian dataset-fashion-mnist, $FASHION_MNIST_DIR or data_dir; else the hub"

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
