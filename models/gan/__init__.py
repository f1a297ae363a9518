"""GAN family models; importing this package registers them.

Every model derives from :class:`~models.gan.adversarial.AdversarialGAN`, which owns the adversarial training
loop; the modules only declare networks and losses: ``dcgan``, ``lsgan``, ``wgan``, ``wgan-gp``, ``progan``,
``stylegan``.
"""

from models.gan import dcgan, lsgan, progan, stylegan, wgan  # noqa: F401
from models.gan.adversarial import AdversarialGAN

__all__ = ["AdversarialGAN"]
