"""GAN family models; importing this package registers them."""

from models.gan import dcgan  # noqa: F401
