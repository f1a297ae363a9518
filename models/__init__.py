"""LightningModules of every family, registered by name in :data:`MODELS`.

Importing a family package (``models.gan``, ``models.vae``, ``models.fusion``) registers all of its models.
"""

from models import fusion, gan, transformer, vae  # noqa: F401  (registration)
from models.base import AutoEncoder, BenchModule, Classifier, ImageGenerator, LikelihoodModel, TextToImageGenerator
from models.registry import MODELS

__all__ = [
    "MODELS", "AutoEncoder", "BenchModule", "Classifier", "ImageGenerator", "LikelihoodModel", "TextToImageGenerator"
]
