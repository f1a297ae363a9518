"""LightningModules of every family, registered by name in :data:`MODELS`."""

from models.base import AutoEncoder, BenchModule, Classifier, ImageGenerator
from models.fusion import classifiers  # noqa: F401  (registration)
from models.gan import dcgan  # noqa: F401
from models.registry import MODELS
from models.vae import vae  # noqa: F401

__all__ = ["MODELS", "AutoEncoder", "BenchModule", "Classifier", "ImageGenerator"]
