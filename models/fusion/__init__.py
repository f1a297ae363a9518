"""Fusion models and operators; importing this package registers them."""

from models.fusion import classifiers, multimodal_vae, operator_classifiers, operators  # noqa: F401
from models.fusion import mixture_vae  # noqa: F401  (mopoe, mmvae)
