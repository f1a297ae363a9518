"""VAE family models; importing this package registers them (vae, beta-vae, info-vae, vq-vae)."""

from models.vae import beta_vae, info_vae, vae, vq_vae  # noqa: F401
