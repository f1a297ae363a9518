"""DCGAN (Radford et al., 2016) with the non-saturating GAN loss (Goodfellow et al., 2014)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ImageGenerator
from models.conv_nets import ConvDecoder, ConvEncoder, dcgan_init
from models.registry import MODELS


@MODELS.register("dcgan")
class DCGAN(ImageGenerator):
    """Unconditional DCGAN trained with Lightning manual optimization (one D step, one G step per batch).

    Args:
        image_shape: (C, H, W) of the data (from the datamodule).
        latent_dim: Size of the noise vector z ~ N(0, I).
        width: Channel width of generator and discriminator.
        lr: Adam learning rate of both networks.
        beta1: Adam β1 (0.5 as in the paper).
    """

    family = "gan"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        latent_dim: int = 64,
        width: int = 32,
        lr: float = 2e-4,
        beta1: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.image_shape = tuple(image_shape)
        self.generator = ConvDecoder(latent_dim, self.image_shape, width, out_activation=nn.Tanh())
        self.discriminator = ConvEncoder(self.image_shape, 1, width, batch_norm=True)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z) -> (B, C, H, W) in [-1, 1]
        return self.generator(z)

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        real = batch["image"] * 2 - 1  # (B, C, H, W) in [-1, 1]
        z = torch.randn(real.shape[0], self.hparams.latent_dim, device=self.device)
        fake = self.generator(z)
        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())  # (B, 1) logits
        loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        losses = {"loss_d": loss_d}
        if stage == "train":
            opt_g, opt_d = self.optimizers()
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()
        d_gen = self.discriminator(fake)
        loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))  # non-saturating
        if stage == "train":
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
        losses["loss_g"] = loss_g
        self.log_dict(
            {f"{stage}_{k}": v.detach() for k, v in losses.items()}, prog_bar=stage == "train", sync_dist=stage != "train"
        )
        return losses

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.hparams.latent_dim, generator=generator).to(self.device)
        return (self.generator(z) + 1) / 2  # (n, C, H, W) in [0, 1]
