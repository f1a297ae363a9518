"""Multimodal VAEs (``mvae-early``, ``mvae-mid``, ``mvae-late``) and the product of Gaussian experts.

The shared model checks for each model, the product-of-experts algebra against closed forms, what cross-modal
generation may and may not read, MVAE's masked experts, modality dropout's frequencies, the ``fusion`` argument's
error, 28×28 (captioned Fashion-MNIST) shapes, and a short training run that lowers the validation ELBO loss; the
generic checks (stage and operator, what cross-modal generation reads, the image-only bound, 28×28 shapes, short
training) also run on the mixture-posterior VAEs ``mopoe`` and ``mmvae`` (their own tests:
``tests/models/test_mopoe_mmvae.py``), and all five share one constructor config (:class:`MultimodalVAEConfig`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import models.fusion.multimodal_vae  # noqa: F401  (registers mvae-*; see the report: models/fusion/__init__.py)
from datamodules import DATAMODULES
from datamodules.captioned_fashion import CaptionedFashionMNISTDataModule
from models import MODELS
from models.fusion.multimodal_vae import DEFAULTS, MultimodalVAE, MultimodalVAEConfig
from models.fusion.operators import fusion_names
from models.fusion.poe import product_of_experts
from tests.models.tester import ModelTesterMixin, quiet_trainer

TINY = {"latent_dim": 8, "width": 16, "d_model": 16, "n_layers": 1}
NAMES = ("mvae-early", "mvae-mid", "mvae-late")
ALL = (*NAMES, "mopoe", "mmvae")  # with the mixture-posterior VAEs of models/fusion/mixture_vae.py


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; several threads on shared CI cores mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _MVAETester(ModelTesterMixin):
    datamodule_name = "captioned-digits"
    hparams = TINY


class TestMVAEEarly(_MVAETester):
    model_name = "mvae-early"


class TestMVAEMid(_MVAETester):
    model_name = "mvae-mid"


class TestMVAELate(_MVAETester):
    model_name = "mvae-late"


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dm():
    dm = DATAMODULES.get("captioned-digits")(batch_size=32)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def batch(dm) -> dict[str, torch.Tensor]:
    return {k: v[:24] for k, v in dm.split_tensors("val").items()}


def tiny(name: str, dm, seed: int = 0, **hparams) -> MultimodalVAE:
    torch.manual_seed(seed)
    return MODELS.get(name).from_data(dm.data_spec(), **{**TINY, **hparams}).eval()


# ---------------------------------------------------------------------------------------- product of experts
def test_two_identical_experts_without_prior_halve_the_variance() -> None:
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen) * 3
    out_mu, out_logvar = product_of_experts(torch.stack([mu, mu]), torch.stack([logvar, logvar]), include_prior=False)
    assert torch.allclose(out_mu, mu, atol=1e-6)
    assert torch.allclose(out_logvar.exp(), logvar.exp() / 2, rtol=1e-5)


def test_prior_expert_matches_the_closed_form() -> None:
    gen = torch.Generator().manual_seed(1)
    mu, var = torch.randn(4, 6, generator=gen), torch.rand(4, 6, generator=gen) * 3 + 0.1
    out_mu, out_logvar = product_of_experts(mu[None], var.log()[None], include_prior=True)
    total = 1.0 + 1.0 / var  # N(0, 1) prior: precision 1, mean 0
    assert torch.allclose(out_logvar.exp(), 1.0 / total, rtol=1e-5)
    assert torch.allclose(out_mu, (mu / var) / total, atol=1e-6)


def test_product_matches_a_float64_direct_computation() -> None:
    gen = torch.Generator().manual_seed(2)
    mus, logvars = torch.randn(3, 7, 5, generator=gen), torch.randn(3, 7, 5, generator=gen) * 2
    precision = torch.cat([torch.ones(1, 7, 5), (-logvars).exp()]).double()  # prior expert first
    means = torch.cat([torch.zeros(1, 7, 5), mus]).double()
    expected_mu = (means * precision).sum(0) / precision.sum(0)
    out_mu, out_logvar = product_of_experts(mus, logvars)
    assert torch.allclose(out_mu.double(), expected_mu, atol=1e-5)
    assert torch.allclose(out_logvar.double(), -precision.sum(0).log(), atol=1e-5)


def test_masked_expert_is_ignored_per_sample() -> None:
    gen = torch.Generator().manual_seed(3)
    mus, logvars = torch.randn(2, 4, 3, generator=gen), torch.randn(2, 4, 3, generator=gen)
    mus[1, :2] = float("nan")  # the masked-out entries are never read
    mask = torch.tensor([[True, True, True, True], [False, False, True, True]])
    for prior in (False, True):
        out_mu, out_logvar = product_of_experts(mus, logvars, mask, include_prior=prior)
        alone_mu, alone_logvar = product_of_experts(mus[:1, :2], logvars[:1, :2], include_prior=prior)
        both_mu, both_logvar = product_of_experts(mus[:, 2:], logvars[:, 2:], include_prior=prior)
        assert torch.allclose(out_mu[:2], alone_mu, atol=1e-6) and torch.allclose(out_logvar[:2], alone_logvar)
        assert torch.allclose(out_mu[2:], both_mu, atol=1e-6) and torch.allclose(out_logvar[2:], both_logvar)
    with pytest.raises(ValueError, match="at least one present expert"):
        product_of_experts(mus, logvars, torch.zeros(2, 4, dtype=torch.bool), include_prior=False)


def test_extreme_variances_stay_finite_and_the_precise_expert_wins() -> None:
    mus = torch.tensor([[[3.0]], [[-5.0]]])
    logvars = torch.tensor([[[-30.0]], [[20.0]]])  # the clamp range of the posteriors
    out_mu, out_logvar = product_of_experts(mus, logvars)
    assert torch.isfinite(out_mu).all() and torch.isfinite(out_logvar).all()
    assert out_mu.item() == pytest.approx(3.0, abs=1e-6) and out_logvar.item() == pytest.approx(-30.0, abs=1e-5)


# ------------------------------------------------------------------------------------------- shared config
@pytest.mark.parametrize("name", ALL)
def test_every_multimodal_vae_takes_the_shared_config_as_keywords(name: str) -> None:
    """The config's fields are keyword arguments of every constructor, with the shared defaults, and rebuild it."""
    cls = MODELS.get(name)
    params = inspect.signature(cls.__init__).parameters
    for field in dataclasses.fields(MultimodalVAEConfig):
        assert params[field.name].default == getattr(DEFAULTS, field.name), field.name
    torch.manual_seed(0)
    model = cls(image_shape=[1, 8, 8], vocab_size=20, text_length=7, latent_dim=5, d_model=16, text_weight=2.0)
    assert model.config == MultimodalVAEConfig.pick(model.hparams)
    assert (model.config.image_shape, model.config.vocab_size, model.latent_dim) == ((1, 8, 8), 20, 5)
    assert "config" not in model.hparams, "save_hyperparameters records the keyword arguments, not the dataclass"
    with pytest.raises(ValueError, match="caption vocabulary"):
        cls(vocab_size=1)
    with pytest.raises(ValueError, match="text_weight"):
        cls(text_weight=-1.0)


def test_mvae_late_keeps_its_module_names_for_old_checkpoints() -> None:
    """The shared experts base (UnimodalExpertsMVAE) builds mvae-late's modules under their old names, in order."""
    model = MODELS.get("mvae-late")()
    assert [name for name, _ in model.named_children()] == [
        "tokenizers", "image_decoder", "text_decoder", "encoders", "experts"]
    assert model.num_parameters() == 56225  # the pre-refactor count at the defaults


# --------------------------------------------------------------------------------------- stage and operator
@pytest.mark.parametrize(("name", "hparams", "stage", "operator"), [
    ("mvae-early", {}, "early", "early-concat"),
    ("mvae-mid", {}, "mid", "mid-concat"),
    ("mvae-mid", {"fusion": "mid-gated"}, "mid", "mid-gated"),
    ("mvae-late", {}, "late", "poe"),
    ("mopoe", {}, "late", "mopoe"),
    ("mmvae", {}, "late", "moe"),
])
def test_models_declare_stage_operator_and_modalities(name: str, hparams: dict, stage: str, operator: str, dm) -> None:
    model = tiny(name, dm, **hparams)
    assert (model.fusion_stage, model.fusion_operator) == (stage, operator)
    assert model.family == "fusion" and model.required_modalities() == ("image", "text")


def test_bad_fusion_name_lists_the_mid_operators() -> None:
    for bad in ("late-average", "early-concat", "not-an-operator"):
        with pytest.raises(ValueError, match="mid-fusion operator") as info:
            MODELS.get("mvae-mid")(fusion=bad)
        assert bad in str(info.value)
        for accepted in fusion_names(stage="mid"):
            assert accepted in str(info.value)
    with pytest.raises(ValueError, match="p_drop"):
        MODELS.get("mvae-early")(p_drop=0.6)


@pytest.mark.parametrize("fusion", fusion_names(stage="mid"))
def test_every_mid_operator_trains_with_alignment(fusion: str, dm, batch) -> None:
    model = tiny("mvae-mid", dm, fusion=fusion, align_weight=0.5, text_weight=2.0).train()
    loss, logs = model.training_objective(batch)
    loss.backward()
    assert torch.isfinite(loss) and logs["align"] > 0
    assert all(p.grad is not None for p in model.alignment.parameters())
    expected = logs["rec_image"] + 2.0 * logs["rec_text"] + logs["kl"] + 0.5 * logs["align"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------------------------- missing modalities
def test_modality_dropout_frequencies(dm) -> None:
    model = tiny("mvae-early", dm, p_drop=0.3)
    torch.manual_seed(0)
    image, text = model.modality_dropout(20000, torch.device("cpu"))
    assert (image | text).all(), "image and caption are never dropped together"
    assert (~image).float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert (~text).float().mean().item() == pytest.approx(0.3, abs=0.015)


@pytest.mark.parametrize("name", ALL)
def test_text_only_posterior_reads_no_image(name: str, dm, batch) -> None:
    model = tiny(name, dm)
    x, w = batch["image"], batch["text"]
    absent = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        mu, logvar = model.encode(None, w)
        for image in (x, torch.rand_like(x), x.flip(0)):
            mu2, logvar2 = model.encode(image, w, image_present=absent)
            assert torch.allclose(mu, mu2, atol=1e-6) and torch.allclose(logvar, logvar2, atol=1e-6)
        joint_mu, _ = model.encode(x, w)
    assert not torch.allclose(mu, joint_mu), "the image does reach the joint posterior"


@pytest.mark.parametrize("name", ALL)
def test_cross_modal_generation_depends_on_the_caption(name: str, dm, batch) -> None:
    model = tiny(name, dm)
    w = batch["text"]
    gen = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    images = model.sample_from_text(w, generator=gen(0))
    assert torch.equal(images, model.sample_from_text(w, generator=gen(0)))
    assert not torch.allclose(images, model.sample_from_text(w.flip(0), generator=gen(0)), atol=1e-4)
    with torch.no_grad():  # a posterior sample of q(z | w) through the image decoder's mean
        mu, logvar = model.encode(None, w)
        expected = torch.sigmoid(model.image_decoder(model.reparameterize(mu, logvar, gen(0))))
    assert torch.allclose(images, expected)


def test_late_fusion_with_the_image_expert_masked_is_the_text_posterior(dm, batch) -> None:
    model = tiny("mvae-late", dm)
    x, w = batch["image"], batch["text"]
    present = torch.arange(len(x)) % 2 == 0  # every other sample has its image expert masked
    with torch.no_grad():
        mixed_mu, mixed_logvar = model.encode(x, w, image_present=present)
        text_mu, text_logvar = model.encode(None, w)
        joint_mu, joint_logvar = model.encode(x, w)
        expert_mu, expert_logvar = model.expert("text", w)
    assert torch.allclose(mixed_mu[~present], text_mu[~present], atol=1e-6)
    assert torch.allclose(mixed_logvar[~present], text_logvar[~present], atol=1e-6)
    assert torch.allclose(mixed_mu[present], joint_mu[present], atol=1e-6)
    assert torch.allclose(mixed_logvar[present], joint_logvar[present], atol=1e-6)
    precision = 1.0 + (-expert_logvar).exp()  # text expert times the N(0, I) prior, in closed form
    assert torch.allclose(text_logvar, -precision.log(), atol=1e-5)
    assert torch.allclose(text_mu, expert_mu * (-expert_logvar).exp() / precision, atol=1e-5)


def test_late_objective_is_the_sum_of_the_three_elbos(dm, batch) -> None:
    model = tiny("mvae-late", dm, text_weight=3.0).train()
    torch.manual_seed(0)
    loss, logs = model.training_objective(batch)
    total = logs["nelbo_joint"] + logs["nelbo_image"] + logs["nelbo_text"]
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    joint = logs["rec_image"] + 3.0 * logs["rec_text"] + logs["kl"]  # λ = text_weight on the text term
    assert logs["nelbo_joint"].item() == pytest.approx(joint.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["mvae-early", "mvae-mid"])
def test_dropout_objective_is_the_weighted_negative_elbo(name: str, dm, batch) -> None:
    model = tiny(name, dm, text_weight=4.0).train()
    torch.manual_seed(0)
    loss, logs = model.training_objective(batch)
    expected = logs["rec_image"] + 4.0 * logs["rec_text"] + logs["kl"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    model.eval()
    torch.manual_seed(0)
    val, val_logs = model.validation_objective(batch)  # text weight 1, both modalities, no dropout
    assert val.item() == pytest.approx((val_logs["rec_image"] + val_logs["rec_text"] + val_logs["kl"]).item(), rel=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_image_only_elbo_is_a_bound_in_nats_per_image(name: str, dm, batch) -> None:
    model = tiny(name, dm)
    x = batch["image"]
    torch.manual_seed(0)
    elbo = model.elbo(x)
    nll1 = model.nll(x, 1, generator=torch.Generator().manual_seed(0))
    assert elbo.shape == nll1.shape == (len(x),)
    assert (elbo < 0).all() and (nll1 > 0).all()  # Bernoulli surrogate: log p(x) <= 0
    assert elbo.mean() < -0.25 * 64 * math.log(2)  # an untrained decoder: about ln 2 nats per pixel, per image


# -------------------------------------------------------------------------------- 28×28 (captioned Fashion)
@pytest.mark.parametrize("name", ALL)
def test_works_at_the_captioned_fashion_mnist_shapes(name: str) -> None:
    vocab, length = len(CaptionedFashionMNISTDataModule.vocab), CaptionedFashionMNISTDataModule.text_length
    torch.manual_seed(0)
    model = MODELS.get(name)(image_shape=(1, 28, 28), vocab_size=vocab, text_length=length, **TINY)
    batch = {"image": torch.rand(4, 1, 28, 28), "text": torch.randint(vocab, (4, length)), "label": torch.arange(4)}
    loss, _ = model.train().training_objective(batch)
    loss.backward()
    model.eval()
    assert torch.isfinite(loss)
    assert model.sample(3).shape == (3, 1, 28, 28)
    assert model.sample_from_text(batch["text"]).shape == (4, 1, 28, 28)
    assert model.reconstruct_batch(batch).shape == (4, 1, 28, 28)
    assert model.generate_text(batch["image"]).shape == (4, length)


# ------------------------------------------------------------------------------------------ short training
@pytest.mark.parametrize("name", ALL)
def test_short_training_lowers_the_validation_elbo_loss(name: str, dm, tmp_path: Path) -> None:
    """60 Adam steps (batch 32) on captioned-digits: the logged val_loss (-ELBO(x, w), nats) drops clearly."""
    model = tiny(name, dm, lr=3e-3).train()
    trainer = quiet_trainer(tmp_path, max_steps=60, limit_val_batches=0, deterministic=False)

    def val_loss() -> dict[str, float]:
        torch.manual_seed(0)
        return quiet_trainer(tmp_path).validate(model, datamodule=dm, verbose=False)[0]

    before = val_loss()
    trainer.fit(model, datamodule=dm)
    after = val_loss()
    assert {"train_loss", "train_rec_image", "train_rec_text", "train_kl"} <= set(trainer.callback_metrics)
    assert {"val_loss", "val_rec_image", "val_rec_text", "val_kl", "val_nelbo_image"} <= set(after)
    change = f"val_loss {before['val_loss']:.1f} -> {after['val_loss']:.1f}"
    assert after["val_loss"] < before["val_loss"] - 15.0, change  # measured: about 79-80 -> 44-46 (mmvae 52) nats
    assert after["val_nelbo_image"] < before["val_nelbo_image"] - 5.0
