"""VAE family models; importing this package registers them."""

from models.vae import vae  # noqa: F401
