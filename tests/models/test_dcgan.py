"""DCGAN: the shared model checks, plus its upsampling plan and GAN-specific training facts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.base import DataSpec
from models import MODELS
from models.conv_nets import ConvDecoder, ConvEncoder, upsampling_plan
from tests.models.tester import ModelTesterMixin, param_snapshot, quiet_trainer


class TestDCGAN(ModelTesterMixin):
    model_name = "dcgan"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    hparams = {"latent_dim": 8, "width": 8}
    batch_size = 16

    def test_both_networks_change_after_one_step(self, dm, tmp_path: Path) -> None:
        """Manual optimization: one batch is one discriminator step and one generator step."""
        model = self.build_model(dm)
        assert model.automatic_optimization is False
        gen_before, disc_before = param_snapshot(model.generator), param_snapshot(model.discriminator)
        quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0, deterministic=True).fit(model, datamodule=dm)
        gen_after, disc_after = param_snapshot(model.generator), param_snapshot(model.discriminator)
        assert any(not torch.equal(gen_before[k], gen_after[k]) for k in gen_before), "generator did not change"
        assert any(not torch.equal(disc_before[k], disc_after[k]) for k in disc_before), "discriminator did not change"

    def test_sample_follows_the_generator_seed(self, dm) -> None:
        model = self.build_model(dm).eval()
        a = model.sample(3, generator=torch.Generator().manual_seed(0))
        b = model.sample(3, generator=torch.Generator().manual_seed(1))
        assert not torch.equal(a, b)

    def test_forward_maps_latents_to_tanh_range(self, dm) -> None:
        model = self.build_model(dm).eval()
        with torch.no_grad():
            out = model(torch.randn(5, self.hparams["latent_dim"]))
        assert out.shape == (5, 1, 16, 16)
        assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize(
    ("size", "expected"),
    [(6, (3, 1)), (8, (4, 1)), (10, (5, 1)), (12, (3, 2)), (14, (7, 1)), (16, (4, 2)), (28, (7, 2)),
     (32, (4, 3)), (64, (4, 4)), (96, (3, 5))],
)
def test_upsampling_plan_valid_sizes(size: int, expected: tuple[int, int]) -> None:
    base, n = upsampling_plan(size)
    assert (base, n) == expected
    assert base * 2**n == size
    assert 3 <= base <= 7 and n >= 1


@pytest.mark.parametrize("size", [1, 3, 4, 5, 7, 9, 11, 44, 100])
def test_upsampling_plan_invalid_sizes_raise(size: int) -> None:
    # 4 and 7 need no doubling (n == 0); 9, 11 are odd; 44 = 11·4 and 100 = 25·4 have bases above 7.
    with pytest.raises(ValueError, match=str(size)):
        upsampling_plan(size)


@pytest.mark.parametrize("size", [8, 16, 28, 32])
def test_conv_stacks_produce_the_planned_shapes(size: int) -> None:
    shape = (3, size, size)
    decoder = ConvDecoder(latent_dim=4, image_shape=shape, width=4)
    encoder = ConvEncoder(shape, out_dim=5, width=4)
    z = torch.randn(2, 4)
    x = decoder(z)
    assert x.shape == (2, *shape)
    assert encoder(x).shape == (2, 5)


@pytest.mark.parametrize("size", [8, 28, 32])
def test_dcgan_builds_for_other_image_sizes(size: int) -> None:
    spec = DataSpec(image_shape=(3, size, size), num_classes=10)
    model = MODELS.get("dcgan").from_data(spec, latent_dim=4, width=4).eval()
    images = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, size, size)


def test_dcgan_rejects_unsupported_image_size() -> None:
    spec = DataSpec(image_shape=(1, 9, 9), num_classes=10)
    with pytest.raises(ValueError, match="9"):
        MODELS.get("dcgan").from_data(spec, latent_dim=4, width=4)
