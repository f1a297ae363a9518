"""The adversarial training loop shared by every GAN of the family.

:class:`AdversarialGAN` owns what all members share — Lightning manual optimization, ``n_critic`` critic steps per
generator step, optional critic regularizers (gradient penalty, R1, drift), an optional exponential-moving-average
(EMA) copy of the generator, logging, validation and deterministic sampling. A registered model only declares its
networks (passed to ``__init__``), its losses (:meth:`~AdversarialGAN.critic_loss`,
:meth:`~AdversarialGAN.generator_loss`, optionally :meth:`~AdversarialGAN.critic_regularizers`) and its optimizers.

Step accounting. One training batch is one critic step; the generator also steps on the batches where
``train_batches % n_critic == 0`` (``train_batches`` counts training batches from 0, so the very first batch
updates both networks and the ratio is exactly ``n_critic`` critic steps per generator step). ``train_batches`` is a
persistent buffer: a loaded model knows how far it was trained (ProGAN's resolution phase depends on it). Lightning's
``trainer.global_step`` counts ``optimizer.step()`` calls in manual optimization, so it advances by 2 on batches with
a generator step and by 1 otherwise; the suites budget training in epochs (batches), which this does not affect.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ImageGenerator


def next_power_of_two(n: int) -> int:
    """Smallest power of two >= ``n``."""
    return 1 << (int(n) - 1).bit_length()


def resize_images(x: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to (B, C, side, side), antialiased when shrinking; identity if H == side."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=side < x.shape[-1])


def gradient_penalty(critic: Any, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al., 2017): E[(||∇D(x̂)||₂ − 1)²] at x̂ = ε·real + (1 − ε)·fake, unweighted.

    Args:
        critic: Callable (B, C, H, W) -> (B, 1) scores.
        real: (B, C, H, W) real images. fake: (B, C, H, W) generated images (detached).
        eps: (B, 1, 1, 1) interpolation weights; None draws ε ~ U[0, 1] per image.

    Returns:
        Scalar penalty, differentiable w.r.t. the critic's parameters (``create_graph=True``).
    """
    if eps is None:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)  # (B, C, H, W)
    with torch.enable_grad():
        scores = critic(x_hat)  # (B, 1)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # (B, C, H, W)
    norm = (grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt()  # (B,); the epsilon keeps the double backward finite
    return (norm - 1).pow(2).mean()


def r1_penalty(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 penalty (Mescheder et al., 2018): E[||∇ₓD(x)||²] on real images, unweighted (callers multiply by γ/2).

    Args:
        scores: (B, 1) critic outputs on ``real``, computed with ``real.requires_grad`` set.
        real: (B, C, H, W) the real images the scores came from.
    """
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)  # (B, C, H, W)
    return grad.flatten(1).pow(2).sum(1).mean()


class AdversarialGAN(ImageGenerator):
    """Unregistered base of the GAN family: manual optimization of a generator against a critic.

    Subclasses build their networks, pass them to ``__init__``, call ``self.save_hyperparameters()`` in their own
    ``__init__`` afterwards, and implement :meth:`critic_loss`, :meth:`generator_loss` and
    :meth:`configure_optimizers` (returning ``[generator_optimizer, critic_optimizer]`` in this order). Models
    whose networks take more than ``z`` / ``x`` (progressive growing, noise inputs) or whose training resolution
    differs from the data's override :meth:`generate`, :meth:`critic`, :meth:`prepare_real` and :meth:`render`.

    Images are handled in [-1, 1] inside the model; :meth:`sample` maps them to [0, 1].

    Args:
        image_shape: (C, H, W) of the data.
        generator: Network mapping z (B, latent_dim) to images (the trained one).
        discriminator: Critic network mapping images to (B, 1) scores (logits for the classic GAN losses).
        latent_dim: Size of the noise vector z ~ N(0, I).
        n_critic: Critic steps per generator step (>= 1).
        ema_decay: Decay d of the EMA generator, ``ema = d·ema + (1 − d)·generator`` after every generator step;
            0 disables it. When enabled, :meth:`sample` uses the EMA generator (ProGAN, StyleGAN).

    Attributes:
        generator_ema: The EMA copy of the generator (parameters frozen), or None when ``ema_decay`` is 0.
        train_batches: (long scalar buffer) training batches seen, i.e. critic steps taken.
    """

    family = "gan"
    #: Whether the critic step needs gradients w.r.t. the real images (R1 penalty).
    real_requires_grad: bool = False

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int,
        n_critic: int = 1,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.automatic_optimization = False
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = int(latent_dim)
        self.n_critic = int(n_critic)
        self.ema_decay = float(ema_decay)
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema: nn.Module | None = None
        if self.ema_decay > 0:
            self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        self.register_buffer("train_batches", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------------------- model hooks
    def generate(self, net: nn.Module, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Images the critic compares with :meth:`prepare_real` of real ones; (B, Z) -> (B, C, h, w).

        Args:
            net: The generator or its EMA copy.
            z: (B, Z) latent vectors on the model's device.
            rng: CPU generator for any further noise the network draws (None: the global RNG).
        """
        return net(z)

    def render(self, net: nn.Module, z: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Images at the data's shape for :meth:`sample`, (B, Z) -> (B, C, H, W) in about [-1, 1]."""
        return self.generate(net, z, rng)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """Critic scores, (B, C, h, w) -> (B, 1)."""
        return self.discriminator(x)

    def prepare_real(self, real: torch.Tensor) -> torch.Tensor:
        """Maps real images (B, C, H, W) in [-1, 1] to what the critic compares with :meth:`generate`."""
        return real

    def critic_loss(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
        """Adversarial critic loss from scores on real and generated images, each (B, 1) -> scalar."""
        raise NotImplementedError

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        """Generator loss from the critic's scores (B, 1) on generated images -> scalar."""
        raise NotImplementedError

    def critic_regularizers(self, real: torch.Tensor, fake: torch.Tensor,
                            d_real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra critic loss terms, already weighted, by log name (e.g. ``{"gp": λ·GP}``); none by default.

        Args:
            real: (B, C, h, w) prepared real images (``requires_grad`` when :attr:`real_requires_grad`).
            fake: (B, C, h, w) generated images, detached.
            d_real: (B, 1) critic scores on ``real``.
        """
        return {}

    def after_critic_step(self) -> None:
        """Called after every critic optimizer step (WGAN clips the critic's weights here)."""

    # ------------------------------------------------------------------------------------------- public API
    @property
    def sampling_generator(self) -> nn.Module:
        """The network :meth:`sample` uses: the EMA generator when enabled, else the trained one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z) -> (B, C, H, W) in about [-1, 1]
        return self.render(self.generator, z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)  # (n, Z), drawn on the CPU
        x = self.render(self.sampling_generator, z, rng=generator)  # (n, C, H, W) in about [-1, 1]
        return ((x + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema ← d·ema + (1 − d)·generator`` for parameters; buffers (batch-norm statistics) are copied."""
        if self.generator_ema is None:
            return
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            p_ema.mul_(self.ema_decay).add_(p.detach(), alpha=1.0 - self.ema_decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)

    def is_generator_step(self, batch_count: int | None = None) -> bool:
        """Whether the batch with this index (default: the next one) also takes a generator step."""
        count = int(self.train_batches) if batch_count is None else batch_count
        return count % self.n_critic == 0

    # ------------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        opt_g, opt_d = self.optimizers()
        generator_step = self.is_generator_step()
        real = self.prepare_real(batch["image"] * 2 - 1)  # (B, C, h, w) in [-1, 1]
        if self.real_requires_grad:
            real = real.detach().requires_grad_(True)
        z = torch.randn(real.shape[0], self.latent_dim, device=self.device)  # (B, Z)
        with torch.set_grad_enabled(generator_step):  # the generator graph is kept only when it will step
            fake = self.generate(self.generator, z)  # (B, C, h, w)

        d_real, d_fake = self.critic(real), self.critic(fake.detach())  # (B, 1) each
        loss_d = self.critic_loss(d_real, d_fake)
        terms = self.critic_regularizers(real, fake.detach(), d_real)
        total_d = loss_d + sum(terms.values()) if terms else loss_d
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(total_d)
        opt_d.step()
        self.after_critic_step()
        logs = {"loss_d": total_d, **terms}

        if generator_step:
            loss_g = self.generator_loss(self.critic(fake))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self.update_ema()
            logs["loss_g"] = loss_g  # logged on generator steps only (every n_critic-th batch)
        self.train_batches += 1
        self.log_dict({f"train_{k}": v.detach() for k, v in logs.items()}, prog_bar=True)
        return {k: v.detach() for k, v in logs.items()}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Adversarial losses without regularizers (the gradients they need are off in validation)."""
        real = self.prepare_real(batch["image"] * 2 - 1)
        z = torch.randn(real.shape[0], self.latent_dim, device=self.device)
        fake = self.generate(self.generator, z)
        d_fake = self.critic(fake)
        logs = {"loss_d": self.critic_loss(self.critic(real), d_fake), "loss_g": self.generator_loss(d_fake)}
        self.log_dict({f"val_{k}": v.detach() for k, v in logs.items()}, sync_dist=True)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Weights saved before the batch counter existed (DCGAN runs) load as "counter at 0".
        state_dict.setdefault(prefix + "train_batches", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
