"""The GAN family: the shared model checks for every member, plus the facts of each training method.

DCGAN's own checks live in ``test_dcgan.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from bench.metrics.fid import frechet_distance
from datamodules.base import DataSpec, TensorDictDataset
from models import MODELS
from models.gan.adversarial import AdversarialGAN, gradient_penalty, r1_penalty
from models.gan.progan import progressive_schedule
from tests.models.tester import ModelTesterMixin, param_snapshot, quiet_trainer

TINY = {"latent_dim": 8, "width": 8}
TINY_PROGRESSIVE = {"latent_dim": 8, "width": 4, "max_channels": 8}


class _GANTester(ModelTesterMixin):
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    batch_size = 16


class TestLSGAN(_GANTester):
    model_name = "lsgan"
    hparams = TINY


class TestWGAN(_GANTester):
    model_name = "wgan"
    hparams = {**TINY, "n_critic": 2}


class TestWGANGP(_GANTester):
    model_name = "wgan-gp"
    hparams = {**TINY, "n_critic": 2}


class TestProGAN(_GANTester):
    model_name = "progan"
    hparams = {**TINY_PROGRESSIVE, "steps_per_phase": 2}


class TestStyleGAN(_GANTester):
    model_name = "stylegan"
    hparams = {**TINY_PROGRESSIVE, "mapping_layers": 2}


# ----------------------------------------------------------------------------------------------------- helpers
def build(name: str, side: int = 16, channels: int = 1, seed: int = 0, **hparams: Any) -> AdversarialGAN:
    pl.seed_everything(seed, verbose=False)
    return MODELS.get(name).from_data(DataSpec(image_shape=(channels, side, side), num_classes=10), **hparams)


def fixed_loader(images: torch.Tensor, batches: int) -> DataLoader:
    """A loader that yields the same batch (all of ``images``) ``batches`` times."""
    n = len(images)
    idx = torch.arange(n).repeat(batches)
    data = TensorDictDataset(image=images[idx], label=torch.zeros(n * batches, dtype=torch.long))
    return DataLoader(data, batch_size=n, shuffle=False)


def random_images(n: int, side: int = 16, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


class Recorder(pl.Callback):
    """Calls ``fn(model)`` before (``when="start"``) or after every training batch and keeps the results."""

    def __init__(self, fn: Any, when: str = "end") -> None:
        self.fn, self.when, self.values = fn, when, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.when == "start":
            self.values.append(self.fn(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.when == "end":
            self.values.append(self.fn(pl_module))


# ----------------------------------------------------------------------------------------------------- all
@pytest.mark.parametrize("name", ["dcgan", "lsgan", "wgan", "wgan-gp", "progan", "stylegan"])
@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32), (3, 64)])
def test_every_gan_samples_other_shapes(name: str, channels: int, side: int) -> None:
    small = TINY_PROGRESSIVE if name in ("progan", "stylegan") else {"latent_dim": 4, "width": 4}
    model = build(name, side, channels, **small).eval()
    assert model.family == "gan" and isinstance(model, AdversarialGAN)
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, channels, side, side)
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize(("name", "n_critic"), [("wgan", 3), ("wgan-gp", 3), ("lsgan", 1)])
def test_n_critic_critic_steps_per_generator_step(name: str, n_critic: int, tmp_path: Path) -> None:
    """Batch k is a critic step; it is also a generator step when k % n_critic == 0 (so batch 0 steps both)."""
    hp = {**TINY, "n_critic": n_critic} if n_critic > 1 else TINY
    model = build(name, **hp)
    batches = 7
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=fixed_loader(random_images(8), batches))
    opt_g, opt_d = trainer.optimizers
    steps = {o: int(next(iter(o.state.values()))["step"]) for o in (opt_g, opt_d)}
    assert steps[opt_d] == batches
    assert steps[opt_g] == math.ceil(batches / n_critic)
    assert int(model.train_batches) == batches
    assert [model.is_generator_step(k) for k in range(4)] == [k % n_critic == 0 for k in range(4)]


def test_losses_are_logged_as_train_metrics(tmp_path: Path) -> None:
    model = build("wgan-gp", **TINY, n_critic=2)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=fixed_loader(random_images(8), 3))
    assert {"train_loss_d", "train_loss_g", "train_gp"} <= set(trainer.callback_metrics)
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())


# ----------------------------------------------------------------------------------------------------- EMA
def test_ema_generator_is_the_exponential_average_after_steps(tmp_path: Path) -> None:
    decay = 0.8
    model = build("lsgan", **TINY, ema_decay=decay)
    assert model.generator_ema is not None
    assert all(not p.requires_grad for p in model.generator_ema.parameters())
    expected = param_snapshot(model.generator)  # the EMA starts as a copy of the generator
    assert all(torch.equal(expected[k], v) for k, v in dict(model.generator_ema.named_parameters()).items())

    recorder = Recorder(lambda m: param_snapshot(m.generator))
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(model, train_dataloaders=fixed_loader(random_images(8), 4))
    assert len(recorder.values) == 4
    for g in recorder.values:  # one generator step per batch
        expected = {k: decay * expected[k] + (1 - decay) * g[k] for k in expected}
    ema = dict(model.generator_ema.named_parameters())
    for k, v in expected.items():
        torch.testing.assert_close(ema[k].detach(), v, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(ema[k], recorder.values[-1][k]) for k in expected)  # not just the generator
    for name, buf in model.generator_ema.named_buffers():  # batch-norm statistics are copied
        assert torch.equal(buf, dict(model.generator.named_buffers())[name])

    model.eval()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        via_ema = ((model.generator_ema(z) + 1) / 2).clamp(0, 1)
        via_generator = ((model.generator(z) + 1) / 2).clamp(0, 1)
    sampled = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(sampled, via_ema)  # sample() uses the EMA generator
    assert not torch.equal(sampled, via_generator)


def test_ema_off_means_no_copy_and_sampling_from_the_generator() -> None:
    model = build("dcgan", **TINY)
    assert model.generator_ema is None and model.sampling_generator is model.generator
    with pytest.raises(ValueError, match="ema_decay"):
        build("dcgan", **TINY, ema_decay=1.0)


# ----------------------------------------------------------------------------------------------------- WGAN
def test_wgan_clips_critic_weights_after_a_critic_step(tmp_path: Path) -> None:
    model = build("wgan", **TINY, clip_value=0.01)
    assert max(p.abs().max() for p in model.discriminator.parameters()) > 0.01  # DCGAN init exceeds c
    recorder = Recorder(lambda m: all(p.abs().max() <= 0.01 for p in m.discriminator.parameters()))
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(model, train_dataloaders=fixed_loader(random_images(8), 3))
    clipped = recorder.values
    assert clipped == [True, True, True]
    assert any(p.abs().max() > 0.01 for p in model.generator.parameters())  # only the critic is clipped


# ----------------------------------------------------------------------------------------------------- penalties
def test_gradient_penalty_equals_a_hand_computation() -> None:
    def critic(x: torch.Tensor) -> torch.Tensor:  # D(x) = ½||x||² per image, so ∇D(x̂) = x̂
        return 0.5 * x.flatten(1).pow(2).sum(1, keepdim=True)

    real = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]])  # (2, 1, 1, 2)
    fake = torch.tensor([[[[0.0, 0.0]]], [[[1.0, 0.0]]]])
    eps = torch.tensor([0.5, 0.3]).view(2, 1, 1, 1)
    # x̂₁ = (1.5, 2) → ||·|| = 2.5 → (2.5 − 1)² = 2.25; x̂₂ = (1, 0) → 0; mean = 1.125
    gp = gradient_penalty(critic, real, fake, eps)
    assert gp.item() == pytest.approx(1.125, abs=1e-6)


def test_gradient_penalty_of_a_linear_critic_and_its_gradient() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 1)
    critic = lambda x: lin(x.flatten(1))  # noqa: E731  ∇ₓD = w everywhere
    real, fake = torch.randn(4, 1, 2, 3), torch.randn(4, 1, 2, 3)
    gp = gradient_penalty(critic, real, fake)
    w_norm = lin.weight.norm()
    assert gp.item() == pytest.approx((w_norm.item() - 1) ** 2, rel=1e-5)
    gp.backward()  # create_graph: the penalty trains the critic; d/dw (||w|| − 1)² = 2(||w|| − 1)·w/||w||
    torch.testing.assert_close(lin.weight.grad, (2 * (w_norm - 1) * lin.weight / w_norm).detach())


def test_r1_penalty_equals_a_hand_computation() -> None:
    real = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]], requires_grad=True)
    scores = 0.5 * real.flatten(1).pow(2).sum(1, keepdim=True)  # ∇ = x
    assert r1_penalty(scores, real).item() == pytest.approx((25.0 + 1.0) / 2)


# ----------------------------------------------------------------------------------------------------- ProGAN
def test_progressive_schedule_follows_the_step_count() -> None:
    spp, levels = 10, 3  # 4, 8, 16 px
    expected = {0: (0, 1.0), 9: (0, 1.0), 10: (1, 0.0), 15: (1, 0.5), 19: (1, 0.9), 20: (1, 1.0), 29: (1, 1.0),
                30: (2, 0.0), 35: (2, 0.5), 40: (2, 1.0), 10_000: (2, 1.0)}
    for step, (level, alpha) in expected.items():
        got_level, got_alpha = progressive_schedule(step, spp, levels)
        assert got_level == level and got_alpha == pytest.approx(alpha), step
    model = build("progan", **TINY_PROGRESSIVE, steps_per_phase=10)
    assert model.resolution_and_alpha(0) == (4, 1.0)
    assert model.resolution_and_alpha(15) == (8, 0.5)
    assert model.resolution_and_alpha(40) == (16, 1.0)
    assert model.resolution_and_alpha() == (4, 1.0)  # untrained


def test_progan_trains_on_its_schedule_and_remembers_it(tmp_path: Path) -> None:
    model = build("progan", **TINY_PROGRESSIVE, steps_per_phase=2)
    recorder = Recorder(lambda m: m.resolution_and_alpha(), when="start")
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(model, train_dataloaders=fixed_loader(random_images(8), 7))
    assert recorder.values == [(4, 1.0), (4, 1.0), (8, 0.0), (8, 0.5), (8, 1.0), (8, 1.0), (16, 0.0)]
    assert model.resolution_and_alpha() == (16, 0.5)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    path = tmp_path / "progan.pt"
    model.save_weights(path)
    loaded = type(model).load_weights(path)
    assert loaded.resolution_and_alpha() == (16, 0.5)  # the phase is part of the weights


def test_progan_generator_fade_in_blends_resolutions() -> None:
    model = build("progan", **TINY_PROGRESSIVE).eval()
    g = model.generator
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        old = g(z, level=1, alpha=1.0)  # (3, 1, 8, 8)
        new = g(z, level=2, alpha=1.0)  # (3, 1, 16, 16)
        assert old.shape[-1] == 8 and new.shape[-1] == 16
        torch.testing.assert_close(g(z, level=2, alpha=0.0), F.interpolate(old, scale_factor=2, mode="nearest"))
        torch.testing.assert_close(g(z, level=2, alpha=0.25),
                                   0.25 * new + 0.75 * F.interpolate(old, scale_factor=2, mode="nearest"))
        g.to_rgb[1].weight.add_(1.0)  # alpha = 1 no longer depends on the old resolution's output layer
        assert torch.equal(g(z, level=2, alpha=1.0), new)
        assert not torch.equal(g(z, level=1, alpha=1.0), old)


def test_progan_critic_and_real_images_fade_in_the_same_way() -> None:
    model = build("progan", **TINY_PROGRESSIVE, steps_per_phase=10).eval()
    d = model.discriminator
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(d(x, level=2, alpha=0.0), d(F.avg_pool2d(x, 2), level=1, alpha=1.0))
        model.train_batches.fill_(35)  # fading 16 px in, alpha 0.5
        real = model.prepare_real(x)
    half = F.avg_pool2d(x, 2)
    torch.testing.assert_close(real, 0.5 * x + 0.5 * F.interpolate(half, scale_factor=2, mode="nearest"))


def test_progan_and_stylegan_handle_28_px_at_32() -> None:
    for name in ("progan", "stylegan"):
        model = build(name, side=28, **TINY_PROGRESSIVE)
        assert model.work_side == 32
        if name == "progan":
            model.train_batches.fill_(10**6)  # final phase
        z = torch.randn(2, 8)
        with torch.no_grad():
            assert model.generate(model.generator, z).shape == (2, 1, 32, 32)  # what the critic sees
            assert model.prepare_real(torch.rand(2, 1, 28, 28)).shape == (2, 1, 32, 32)
            assert model(z).shape == (2, 1, 28, 28)  # what sample() returns


# ----------------------------------------------------------------------------------------------------- StyleGAN
def test_stylegan_noise_inputs_come_from_the_sampling_generator() -> None:
    model = build("stylegan", **TINY_PROGRESSIVE, mapping_layers=2).eval()
    with torch.no_grad():
        for module in model.modules():  # noise strengths start at 0: make the noise visible
            if hasattr(module, "strength"):
                module.strength.fill_(0.5)
    net = model.sampling_generator
    z = torch.randn(2, 8)
    with torch.no_grad():
        a = net(z, torch.Generator().manual_seed(0))
        b = net(z, torch.Generator().manual_seed(0))
        c = net(z, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # same z, other noise
    s1 = model.sample(2, generator=torch.Generator().manual_seed(3))
    s2 = model.sample(2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    n_layers = len(model.generator.layers)
    assert n_layers == 2 * 3  # two style layers per resolution 4, 8, 16


# ----------------------------------------------------------------------------------------------------- learning
def pixel_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance of flattened pixels (no backbone)."""
    a, b = real.flatten(1).double(), fake.flatten(1).double()
    return float(frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T)))


def test_brief_training_on_a_fixed_batch_lowers_pixel_fid(tmp_path: Path) -> None:
    from datamodules import DATAMODULES

    dm = DATAMODULES.get("digits")(image_size=16, batch_size=64)
    dm.setup()
    real = next(iter(dm.dataloader("train", batch_size=64)))["image"]  # (64, 1, 16, 16) in [0, 1]
    model = build("dcgan", latent_dim=16, width=8, lr=1e-3)
    model.eval()
    before = pixel_fid(real, model.sample(256, generator=torch.Generator().manual_seed(0)))
    model.train()  # Lightning keeps the modes it finds
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, deterministic=True)
    trainer.fit(model, train_dataloaders=fixed_loader(real, 100))
    model.eval()
    after = pixel_fid(real, model.sample(256, generator=torch.Generator().manual_seed(0)))
    assert math.isfinite(after) and not model.diverged
    assert after < 0.5 * before, (before, after)
