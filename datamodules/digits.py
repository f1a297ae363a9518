"""scikit-learn's bundled 8×8 handwritten digits: the embedded default that always works offline."""

from __future__ import annotations

import torch

from datamodules.base import BenchDataModule, DataSpec, resize_images, stratified_split
from datamodules.registry import DATAMODULES


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as images in [0, 1] and labels.

    Returns:
        images (1797, 1, 8, 8) float32 in [0, 1] (the raw 0..16 intensities divided by 16), labels (1797,) long.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div(16.0).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(digits.target).long()
    return images, labels


@DATAMODULES.register("digits")
class DigitsDataModule(BenchDataModule):
    """The UCI/scikit-learn handwritten digits (1,797 images of 8×8 px, 10 classes).

    The split is stratified and fixed (seed 0): 10% validation, 20% test, the rest train
    (1,259 / 179 / 359 images).

    Args:
        image_size: Side the images are resized to (antialiased bilinear); 8 keeps the native size.
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    data_source = "offline: ships with scikit-learn"

    def __init__(self, image_size: int = 8, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 (the native size), got {image_size}")
        self.save_hyperparameters()
        self.image_size = image_size

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        images, labels = load_digits_tensors()
        images = resize_images(images, self.image_size)
        index = stratified_split(labels, fractions=(0.1, 0.2), seed=0)
        return {s: {"image": images[i], "label": labels[i]} for s, i in index.items()}

    def data_spec(self) -> DataSpec:
        return DataSpec(image_shape=(1, self.image_size, self.image_size), num_classes=10)
