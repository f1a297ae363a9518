"""MNIST and CIFAR-10 through Hugging Face ``datasets``, from the hub or from a local copy of the hub files.

The local-directory option takes a folder laid out like the hub repository (``<split>-*.parquet`` files, or
``<config>/<split>-*.parquet``), e.g. a ``huggingface-cli download --repo-type dataset ylecun/mnist`` or
a ``git clone`` of it. Tests use a tiny fixture in that same format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from datamodules.base import BenchDataModule, DataSpec, DataUnavailableError, resize_images
from datamodules.registry import DATAMODULES


def load_hf_image_splits(
    hub_id: str, data_dir: str | None, image_column: str, label_column: str, channels: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Loads the ``train`` and ``test`` splits of an image-classification dataset as uint8 arrays.

    Args:
        hub_id: Hub repository id, used when ``data_dir`` is None.
        data_dir: Local folder with the hub's parquet files.
        image_column: Column holding the images (decoded to PIL by ``datasets``).
        label_column: Column holding integer labels.
        channels: 1 converts images to grayscale ("L"), 3 to "RGB".

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``; images (N, H, W, C) uint8, labels (N,) int64.

    Raises:
        DataUnavailableError: If the folder has no such files or the hub cannot be reached.
    """
    import datasets

    if data_dir is not None:
        root = Path(data_dir)
        files = {
            split: sorted(str(p) for p in root.rglob(f"{split}-*.parquet")) for split in ("train", "test")
        }
        if not all(files.values()):
            raise DataUnavailableError(
                f"{hub_id}: {root} must hold train-*.parquet and test-*.parquet files as on the hub "
                f"(found train={len(files['train'])}, test={len(files['test'])}); download them with "
                f"`huggingface-cli download --repo-type dataset {hub_id} --local-dir DIR` and pass data_dir=DIR"
            )
        ds = datasets.load_dataset("parquet", data_files=files)
    else:
        try:
            ds = datasets.load_dataset(hub_id)
        except Exception as err:
            raise DataUnavailableError(
                f"{hub_id}: the hub is not reachable ({type(err).__name__}: {err}). Download the dataset's parquet "
                f"files elsewhere (e.g. `huggingface-cli download --repo-type dataset {hub_id} --local-dir DIR`) "
                "and pass data_dir=DIR."
            ) from err
    out = {}
    for split in ("train", "test"):
        missing = {image_column, label_column} - set(ds[split].column_names)
        if missing:
            raise DataUnavailableError(f"{hub_id}: split {split!r} has no columns {sorted(missing)}")
        images = [np.asarray(im.convert("L" if channels == 1 else "RGB")) for im in ds[split][image_column]]
        array = np.stack(images)
        if array.ndim == 3:
            array = array[..., None]  # (N, H, W) -> (N, H, W, 1)
        out[split] = (array.astype(np.uint8), np.asarray(ds[split][label_column], dtype=np.int64))
    return out


class HFImageDataModule(BenchDataModule):
    """Base for image-classification datasets loaded through ``datasets``.

    The validation split is the last ``val_size`` images of the hub's train split.

    Args:
        data_dir: Local folder with the hub's parquet files; None fetches ``hub_id`` (needs the network).
        image_size: Side images are resized to; None keeps the native size.
        val_size: Number of train images held out for validation (clamped to a tenth of train).
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    data_source = "hub: Hugging Face datasets (data_dir for a local copy)"

    hub_id: str
    image_column: str
    label_column: str = "label"
    native_shape: tuple[int, int, int]
    env_var: str

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int | None = None,
        val_size: int = 5000,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.save_hyperparameters()
        self.data_dir = data_dir or os.environ.get(self.env_var)
        self.image_size = image_size
        self.val_size = val_size

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        raw = load_hf_image_splits(
            self.hub_id, self.data_dir, self.image_column, self.label_column, channels=self.native_shape[0]
        )

        def to_tensors(images: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)  # (N, C, H, W)
            return {"image": resize_images(x, self.image_size), "label": torch.from_numpy(labels)}

        train_images, train_labels = raw["train"]
        n_val = min(self.val_size, len(train_images) // 10)
        n_train = len(train_images) - n_val
        return {
            "train": to_tensors(train_images[:n_train], train_labels[:n_train]),
            "val": to_tensors(train_images[n_train:], train_labels[n_train:]),
            "test": to_tensors(*raw["test"]),
        }

    def data_spec(self) -> DataSpec:
        c, h, w = self.native_shape
        side = self.image_size or h
        return DataSpec(image_shape=(c, side, side), num_classes=10)


@DATAMODULES.register("mnist")
class MNISTDataModule(HFImageDataModule):
    """MNIST (hub ``ylecun/mnist``), 1×28×28; local folder via ``data_dir`` or ``$MNIST_DIR``."""

    hub_id = "ylecun/mnist"
    image_column = "image"
    native_shape = (1, 28, 28)
    env_var = "MNIST_DIR"


@DATAMODULES.register("cifar10")
class CIFAR10DataModule(HFImageDataModule):
    """CIFAR-10 (hub ``uoft-cs/cifar10``), 3×32×32; local folder via ``data_dir`` or ``$CIFAR10_DIR``."""

    hub_id = "uoft-cs/cifar10"
    image_column = "img"
    native_shape = (3, 32, 32)
    env_var = "CIFAR10_DIR"
