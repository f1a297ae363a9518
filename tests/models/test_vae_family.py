"""The VAE family beyond ``vae``: β-VAE, InfoVAE (MMD), VQ-VAE; plus the IWAE likelihood bound and MMD facts."""

from __future__ import annotations

import math

import pytest
import torch

from models import MODELS, AutoEncoder
from models.vae.likelihood import iwae_nll, mmd, nats_to_bits_per_dim
from models.vae.vq_vae import VectorQuantizer, code_usage_stats
from tests.models.test_vae import ElboImproves
from tests.models.tester import ModelTesterMixin

TINY = {"latent_dim": 4, "width": 8}


def tiny(name: str, seed: int = 0, **hparams) -> AutoEncoder:
    torch.manual_seed(seed)
    return MODELS.get(name)(image_shape=(1, 16, 16), **{**TINY, **hparams})


def digits(n: int = 32, split: str = "train") -> torch.Tensor:
    from datamodules import DATAMODULES

    dm = DATAMODULES.get("digits")(image_size=16, batch_size=16)
    dm.setup()
    return dm.split_tensors(split)["image"][:n]


class TestBetaVAE(ElboImproves, ModelTesterMixin):
    model_name = "beta-vae"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    hparams = TINY
    batch_size = 16

    def test_default_beta_is_4_and_elbo_ignores_it(self) -> None:
        model = tiny("beta-vae").eval()
        assert model.hparams.beta == 4.0
        plain = tiny("vae")
        plain.load_state_dict(model.state_dict())
        x = digits(4)
        torch.manual_seed(0)
        a = model.elbo(x)
        torch.manual_seed(0)
        b = plain.eval().elbo(x)
        assert torch.equal(a, b)  # the score is the β = 1 bound of the same generative model


class TestInfoVAE(ElboImproves, ModelTesterMixin):
    model_name = "info-vae"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    hparams = TINY
    batch_size = 16

    def test_loss_is_rec_plus_weighted_kl_and_mmd(self) -> None:
        model = tiny("info-vae", alpha=0.25, lambda_mmd=10.0)
        x = digits(8)
        torch.manual_seed(3)
        loss, logs = model.training_loss(x, "train")
        expected = logs["rec"] + 0.75 * logs["kl"] + (0.25 + 10.0 - 1) * logs["mmd"]
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    def test_rejects_unknown_kernel(self) -> None:
        with pytest.raises(ValueError, match="kernel"):
            tiny("info-vae", kernel="laplace")


class TestVQVAE(ElboImproves, ModelTesterMixin):
    model_name = "vq-vae"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    hparams = {**TINY, "num_codes": 16}
    batch_size = 16


# ------------------------------------------------------------------------------------------------ IWAE bound
def test_iwae_nll_on_hand_made_weights() -> None:
    equal = torch.full((5, 3), -7.0)
    assert torch.allclose(iwae_nll(equal), torch.full((3,), 7.0))  # equal weights: -log w for every K
    two = torch.tensor([[0.0], [math.log(3.0)]])  # weights 1 and 3: -log mean = -log 2
    assert iwae_nll(two).item() == pytest.approx(-math.log(2.0))
    assert nats_to_bits_per_dim(256 * math.log(2), 256) == pytest.approx(1.0)
    assert AutoEncoder.bits_per_dim(torch.tensor(784 * math.log(2) * 2), (1, 28, 28)).item() == pytest.approx(2.0)


@pytest.fixture(scope="module")
def informative_vae() -> AutoEncoder:
    """A tiny VAE after a few steps on digits, so its posterior is informative and the IWAE gap is visible."""
    model = tiny("vae", seed=0)
    x = digits(32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(15):
        loss, _ = model.training_loss(x, "train")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_nll_with_one_sample_is_minus_elbo_in_expectation(informative_vae) -> None:
    b, reps = 16, 200
    x = digits(b, "test").repeat(reps, 1, 1, 1)  # 200 independent draws per image, in one call
    nll1 = informative_vae.nll(x, 1, generator=torch.Generator().manual_seed(0)).view(reps, b)
    torch.manual_seed(0)
    neg_elbo = -informative_vae.elbo(x).view(reps, b)  # analytic KL: lower variance
    diff = nll1.mean() - neg_elbo.mean()
    stderr = (nll1.var(0).mean() / reps + neg_elbo.var(0).mean() / reps).sqrt() / math.sqrt(b)
    assert abs(diff) < 4 * stderr + 1e-3, f"E[nll(K=1)] - E[-elbo] = {diff:.3f} nats (stderr {stderr:.3f})"


def test_more_importance_samples_tighten_the_bound(informative_vae) -> None:
    x = digits(16, "test")
    gen = torch.Generator().manual_seed(1)
    nll1 = informative_vae.nll(x.repeat(64, 1, 1, 1), 1, generator=gen).view(64, 16).mean(0)  # E[-elbo] per image
    nll64 = informative_vae.nll(x, 64, generator=gen)
    assert nll64.shape == (16,)
    assert nll64.mean() < nll1.mean(), f"K=64: {nll64.mean():.2f}, K=1: {nll1.mean():.2f}"
    assert (nll64 > 0).all()  # Bernoulli surrogate: -log p(x) >= 0


def test_nll_is_deterministic_given_a_generator_and_chunking(informative_vae) -> None:
    x = digits(8, "test")
    a = informative_vae.nll(x, 16, generator=torch.Generator().manual_seed(5))
    b = informative_vae.nll(x, 16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    informative_vae.nll_chunk_size = 8  # one posterior sample per decoder call
    try:
        c = informative_vae.nll(x, 16, generator=torch.Generator().manual_seed(5))
    finally:
        del informative_vae.nll_chunk_size
    assert torch.allclose(a, c, rtol=1e-5, atol=1e-4)
    d = informative_vae.nll(x, 16, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, d)


# ------------------------------------------------------------------------------------------------------- MMD
@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_near_zero_for_same_distribution_and_grows_with_shift(kernel: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 4, generator=gen)
    y = torch.randn(400, 4, generator=gen)
    same = mmd(x, y, kernel).item()
    values = [mmd(x, y + shift, kernel).item() for shift in (0.25, 0.5, 1.0, 2.0)]
    assert abs(same) < 5e-3
    assert abs(mmd(x, x.clone(), kernel).item()) < 5e-3
    assert values == sorted(values) and values[0] > abs(same)


def test_mmd_gradient_is_finite() -> None:
    z = torch.randn(16, 4, requires_grad=True)
    mmd(z, torch.randn(16, 4)).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------- VQ-VAE
@pytest.mark.parametrize("ema_decay", [0.99, 0.0])
def test_straight_through_gradient_reaches_the_encoder(ema_decay: float) -> None:
    model = tiny("vq-vae", num_codes=16, ema_decay=ema_decay)
    terms = model._forward_terms(digits(8))
    terms["rec"].sum().backward()  # reconstruction only: the encoder's gradient must come through the quantizer
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_codebook_loss_trains_the_codebook_without_ema() -> None:
    model = tiny("vq-vae", num_codes=16, ema_decay=0.0, dead_code_steps=0)
    assert isinstance(model.quantizer.codebook, torch.nn.Parameter)
    before = model.quantizer.codebook.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t = model._forward_terms(digits(8))
    (t["rec"] + t["codebook"] + 0.25 * t["commitment"]).mean().backward()
    opt.step()
    assert not torch.equal(before, model.quantizer.codebook.detach())


def test_perplexity_is_exp_entropy_of_code_usage() -> None:
    perplexity, usage = code_usage_stats(torch.tensor([[0, 0], [1, 1]]), num_codes=4)
    assert perplexity.item() == pytest.approx(2.0) and usage.item() == pytest.approx(0.5)
    perplexity, usage = code_usage_stats(torch.tensor([0, 1, 2, 3]), num_codes=4)
    assert perplexity.item() == pytest.approx(4.0) and usage.item() == pytest.approx(1.0)
    perplexity, usage = code_usage_stats(torch.tensor([2, 2, 2, 5]), num_codes=8)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert perplexity.item() == pytest.approx(math.exp(entropy)) and usage.item() == pytest.approx(0.25)


@pytest.mark.parametrize("ema_decay", [0.99, 0.0])
def test_dead_codes_are_reinitialized_from_encoder_outputs(ema_decay: float) -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=8, dim=2, ema_decay=ema_decay, dead_code_steps=3)
    with torch.no_grad():
        q.codebook.copy_(torch.arange(8.0).unsqueeze(1).repeat(1, 2) * 10)  # codes at (0,0), (10,10), ...
        if ema_decay > 0:
            q.ema_sum.copy_(q.codebook)
    q.steps_unused.zero_()
    z_e = torch.randn(4, 2, 3, 3) * 0.1  # every vector is nearest to code 0
    for step in range(3):
        idx = q.indices(z_e)
        assert (idx == 0).all()
        reset = q.update(z_e, idx)
        assert len(reset) == (7 if step == 2 else 0)
    assert sorted(reset.tolist()) == list(range(1, 8))
    flat = VectorQuantizer.flatten(z_e)
    for k in range(1, 8):  # each re-initialized code is one of the batch's encoder outputs
        assert (q.codebook[k] - flat).abs().sum(1).min() < 1e-6
    assert (q.steps_unused == 0).all()
    assert len(torch.unique(q.indices(z_e))) > 1  # the batch now spreads over several codes


def test_fresh_codebook_is_initialized_from_the_first_batch() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=4, dim=3, ema_decay=0.99, dead_code_steps=10)
    z_e = torch.randn(2, 3, 4, 4) + 50.0  # far from the N(0, I) initial codes: one code catches everything
    reset = q.update(z_e, q.indices(z_e))
    assert len(reset) == 3
    assert len(torch.unique(q.indices(z_e))) > 1


def test_encode_decode_indices_shapes_and_reconstruct() -> None:
    model = tiny("vq-vae", num_codes=16).eval()
    x = digits(5)
    idx = model.encode_indices(x)
    assert idx.shape == (5, 4, 4) and idx.dtype == torch.long
    assert idx.min() >= 0 and idx.max() < 16
    images = model.decode_indices(idx)
    assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, model.reconstruct(x))


def test_vq_nll_equals_minus_elbo_and_untrained_prior_is_uniform() -> None:
    model = tiny("vq-vae", num_codes=16).eval()
    x = digits(4)
    elbo = model.elbo(x)
    assert torch.equal(model.nll(x, 1), -elbo)
    assert torch.equal(model.nll(x, 64, generator=torch.Generator().manual_seed(0)), -elbo)
    assert torch.allclose(model.prior_log_probs(), torch.full((4, 4, 16), -math.log(16)))
    idx = model.encode_indices(x)
    log_px = -torch.nn.functional.binary_cross_entropy(model.decode_indices(idx), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(elbo, log_px - 16 * math.log(16), atol=1e-3)  # the VQ-VAE paper's uniform-prior bound


def test_vq_prior_is_fitted_in_training_and_drives_sampling() -> None:
    model = tiny("vq-vae", num_codes=16)
    model.train()
    model._common_step({"image": digits(16)}, "train")
    assert model.prior_counts.sum().item() == pytest.approx(16 * 4 * 4)  # one count per image and position
    model.eval()
    with torch.no_grad():
        model.prior_counts.zero_()
        model.prior_counts[..., 3] = 1e9  # all prior mass on code 3
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(samples, model.decode_indices(torch.full((3, 4, 4), 3)))
