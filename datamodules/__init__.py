"""LightningDataModules, registered by name in :data:`DATAMODULES`."""

from datamodules import (  # noqa: F401  (registration)
    captioned_digits, captioned_fashion, digits, fashion_mnist, fusion_fashion, hf_captions, hf_images, hf_multimodal,
)
from datamodules.base import BenchDataModule, DataSpec, DataUnavailableError
from datamodules.registry import DATAMODULES

__all__ = ["DATAMODULES", "BenchDataModule", "DataSpec", "DataUnavailableError"]
