"""MoPoE (``mopoe``) and MMVAE (``mmvae``): the mixture-posterior multimodal VAEs of :mod:`models.fusion.mixture_vae`.

The shared model checks for both; their objectives against hand computations on tiny fixed examples (closed-form
subset products and KLs, importance weights from ``torch.distributions``, DReG's ŵ² encoder weights from per-draw
gradients); the mixture posterior's weights and moments; losses that fall over 30 Adam steps on a tiny batch; and,
where MultiVae (Agier et al.) is importable, equality with its MoPoE / MMVAE losses and gradients on a fixed batch
with shared weights. MultiVae is not a dependency: ``pip install --no-deps --target DIR multivae pythae nltk`` and
``PYTHONPATH=DIR`` run that test (``pip install multivae`` itself would add the obsolete ``dataclasses`` backport).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from models import MODELS
from models.fusion.mixture_vae import MMVAE, MoPoEVAE, log_mixture_density, moment_matched_gaussian
from tests.models.tester import ModelTesterMixin

TINY = {"latent_dim": 8, "width": 16, "d_model": 16, "n_layers": 1}
HAND = {"latent_dim": 3, "width": 8, "d_model": 8, "n_heads": 2, "text_weight": 2.5}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TestMoPoE(ModelTesterMixin):
    model_name = "mopoe"
    datamodule_name = "captioned-digits"
    hparams = TINY


class TestMMVAE(ModelTesterMixin):
    model_name = "mmvae"
    datamodule_name = "captioned-digits"
    hparams = {**TINY, "iwae_samples": 2}


# ------------------------------------------------------------------------------------------------ fixtures
def tiny_batch(b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(b, 1, 8, 8, generator=gen), "text": torch.randint(32, (b, 10), generator=gen)}


def build(name: str, seed: int = 0, **hparams) -> MoPoEVAE | MMVAE:
    torch.manual_seed(seed)
    return MODELS.get(name)(**{**HAND, **hparams}).eval()  # eval: batch norm reads no batch statistics


def decode_one_by_one(model, z: torch.Tensor, image: torch.Tensor, text: torch.Tensor) -> tuple[list, list]:
    """-log p(x_b | z_b), -log p(w_b | z_b) one sample at a time (a path independent of ``decode_terms``)."""
    rec_image, rec_text = [], []
    for zb, xb, wb in zip(z, image, text):
        logits = model.image_decoder(zb[None])[0].double()
        rec_image.append(F.binary_cross_entropy_with_logits(logits, xb.double(), reduction="sum"))
        log_probs = model.text_decoder(zb[None])[0].double().log_softmax(-1)  # (L, V)
        rec_text.append(-log_probs[torch.arange(len(wb)), wb].sum())
    return rec_image, rec_text


# ---------------------------------------------------------------------------------------------------- MoPoE
@pytest.mark.parametrize("prior_expert", ["full", "all"])
def test_mopoe_objective_matches_a_hand_computation(prior_expert: str) -> None:
    model = build("mopoe", prior_expert=prior_expert)
    batch = tiny_batch(3)
    x, w = batch["image"], batch["text"]
    eps = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(1))  # (S, B, Z)
    with torch.no_grad():
        loss, logs = model.training_objective(batch, eps=eps)
        (mx, lx), (mw, lw) = model.expert("image", x), model.expert("text", w)
    mx, lx, mw, lw = (t.double() for t in (mx, lx, mw, lw))
    prior = 1.0 if prior_expert == "all" else 0.0  # the prior expert's precision in the unimodal products
    subsets = []  # closed-form products: precision = Σ 1/σ², mean = Σ (μ/σ²) / precision
    for mus, precisions in (([mx], [lx.neg().exp()]), ([mw], [lw.neg().exp()]),
                            ([mx, mw], [lx.neg().exp(), lw.neg().exp()])):
        extra = 1.0 if len(mus) == 2 else prior
        total = sum(precisions) + extra
        subsets.append((sum(m * p for m, p in zip(mus, precisions)) / total, 1.0 / total))
    lam, per_subset, parts = 2.5, [], {"rec_image": 0.0, "rec_text": 0.0, "kl": 0.0}
    for s, (mu, var) in enumerate(subsets):
        z = (mu + eps[s].double() * var.sqrt()).float()
        with torch.no_grad():
            rec_image, rec_text = decode_one_by_one(model, z, x, w)
        kl = kl_divergence(Normal(mu, var.sqrt()), Normal(0.0, 1.0)).sum(-1)  # (B,)
        nelbo = torch.stack(rec_image) + lam * torch.stack(rec_text) + kl
        per_subset.append(nelbo.mean())
        parts["rec_image"] += torch.stack(rec_image).mean() / 3
        parts["rec_text"] += torch.stack(rec_text).mean() / 3
        parts["kl"] += kl.mean() / 3
    assert loss.item() == pytest.approx(sum(per_subset).item() / 3, rel=1e-5)
    for key, value in parts.items():
        assert logs[key].item() == pytest.approx(value.item(), rel=1e-5), key
    for key, value in zip(("nelbo_image", "nelbo_text", "nelbo_image_text"), per_subset):
        assert logs[key].item() == pytest.approx(value.item(), rel=1e-5), key


def test_mopoe_with_flat_decoders_is_pixels_ln2_plus_tokens_lnv_plus_the_mean_kl() -> None:
    """Decoders that output zero logits: -log p(x|z) = 64 ln 2 and -log p(w|z) = L ln V whatever z is."""
    model = build("mopoe")
    model.image_decoder.forward = lambda z: torch.zeros(len(z), 1, 8, 8)
    model.text_decoder.forward = lambda z: torch.zeros(len(z), 10, 32)
    batch = tiny_batch(5)
    with torch.no_grad():
        loss, logs = model.training_objective(batch)
        mus, logvars, weights = model.components(batch["image"], batch["text"])
    assert torch.allclose(weights, torch.full((3, 5), 1 / 3))
    kl = 0.5 * (mus.pow(2) + logvars.exp() - 1 - logvars).sum(-1).mean()  # the Σ_S 1/3 KL(q_S || p) bound
    assert logs["rec_image"].item() == pytest.approx(64 * math.log(2), rel=1e-6)
    assert logs["rec_text"].item() == pytest.approx(10 * math.log(32), rel=1e-6)
    assert loss.item() == pytest.approx(64 * math.log(2) + 2.5 * 10 * math.log(32) + kl.item(), rel=1e-6)


def test_mopoe_components_follow_the_present_modalities() -> None:
    model = build("mopoe")
    batch = tiny_batch(4)
    x, w = batch["image"], batch["text"]
    image_present = torch.tensor([True, False, True, True])
    text_present = torch.tensor([True, True, False, True])
    with torch.no_grad():
        _, _, weights = model.components(x, w, image_present, text_present)
        mu_x, lv_x = model.encode(x, None)
        (ex, elx) = model.expert("image", x)
    expected = torch.tensor([[1 / 3, 0, 1, 1 / 3], [1 / 3, 1, 0, 1 / 3], [1 / 3, 0, 0, 1 / 3]])  # (S, B)
    assert torch.allclose(weights, expected)
    assert torch.equal(mu_x, ex) and torch.allclose(lv_x, elx, atol=1e-6), "q(z | x) is the image expert ('full')"
    with pytest.raises(ValueError, match="at least one present modality"):
        model.components(x, w, torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="prior_expert"):
        MODELS.get("mopoe")(prior_expert="none")


# ---------------------------------------------------------------------------------------------------- MMVAE
def hand_log_weights(model: MMVAE, batch: dict[str, torch.Tensor], eps: torch.Tensor) -> torch.Tensor:
    """(M, K, B) log w = log p(x|z) + λ log p(w|z) + log p(z) - log ½[q(z|x) + q(z|w)], in float64."""
    x, w = batch["image"], batch["text"]
    with torch.no_grad():
        experts = [model.expert("image", x), model.expert("text", w)]
    qs = [Normal(mu.double(), (0.5 * lv.double()).exp()) for mu, lv in experts]
    out = torch.empty(eps.shape[:3], dtype=torch.float64)
    for m, q in enumerate(qs):
        for k in range(eps.shape[1]):
            z = q.loc + q.scale * eps[m, k].double()  # (B, Z)
            with torch.no_grad():
                rec_image, rec_text = decode_one_by_one(model, z.float(), x, w)
            log_q = torch.log(0.5 * qs[0].log_prob(z).sum(-1).exp() + 0.5 * qs[1].log_prob(z).sum(-1).exp())
            log_p = Normal(0.0, 1.0).log_prob(z).sum(-1)
            out[m, k] = -torch.stack(rec_image) - 2.5 * torch.stack(rec_text) + log_p - log_q
    return out


@pytest.mark.parametrize("objective", ["dreg", "iwae"])
def test_mmvae_bound_matches_a_hand_computation(objective: str) -> None:
    model = build("mmvae", iwae_samples=3, objective=objective)
    batch = tiny_batch(2)
    eps = torch.randn(2, 3, 2, 3, generator=torch.Generator().manual_seed(2))  # (M, K, B, Z)
    log_w = hand_log_weights(model, batch, eps)
    bound = (torch.logsumexp(log_w, dim=1) - math.log(3)).mean(0)  # (B,): 1/M Σ_m log 1/K Σ_k w_mk
    with torch.no_grad():
        loss, logs = model.training_objective(batch, eps=eps)
        ours = model.log_weights(batch, eps)["log_w"]
    assert torch.allclose(ours.double(), log_w, rtol=1e-5, atol=1e-3)
    assert loss.item() == pytest.approx(-bound.mean().item(), rel=1e-5), "train_loss is the bound in both modes"
    niwae = -(torch.logsumexp(log_w, dim=1) - math.log(3)).mean(1)  # (M,)
    assert logs["niwae_image"].item() == pytest.approx(niwae[0].item(), rel=1e-5)
    assert logs["niwae_text"].item() == pytest.approx(niwae[1].item(), rel=1e-5)


def test_mmvae_dreg_gradients_are_the_squared_weight_path_gradients() -> None:
    """DReG: encoder gradient -1/(MB) Σ ŵ² ∂log w/∂φ through z only; decoder gradient -1/(MB) Σ ŵ ∂log w/∂θ,
    the same as IWAE's (whose encoder gradient differs)."""
    model = build("mmvae", iwae_samples=2, objective="dreg")
    batch = tiny_batch(2)
    eps = torch.randn(2, 2, 2, 3, generator=torch.Generator().manual_seed(3))
    encoder = [p for n, p in model.named_parameters() if n.startswith(("tokenizers", "encoders", "experts"))]
    decoder = [p for n, p in model.named_parameters() if n.startswith(("image_decoder", "text_decoder"))]

    def grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))

    loss, _ = model.training_objective(batch, eps=eps)
    dreg_enc, dreg_dec = grads(loss, encoder), grads(loss, decoder)
    log_w = model.log_weights(batch, eps, detach_posterior=True)["log_w"]  # (M, K, B)
    w_hat = torch.softmax(log_w.detach(), dim=1)
    expected_enc = [torch.zeros_like(p) for p in encoder]
    expected_dec = [torch.zeros_like(p) for p in decoder]
    for index in torch.cartesian_prod(*(torch.arange(n) for n in log_w.shape)):
        m, k, b = index.tolist()
        scale = -1.0 / (2 * 2)  # -1 / (M · B)
        for acc, g in zip(expected_enc, grads(log_w[m, k, b], encoder)):
            acc += scale * w_hat[m, k, b] ** 2 * (0 if g is None else g)
        for acc, g in zip(expected_dec, grads(log_w[m, k, b], decoder)):
            acc += scale * w_hat[m, k, b] * (0 if g is None else g)
    for got, want in zip(dreg_enc + dreg_dec, expected_enc + expected_dec):
        assert got is not None and torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    iwae = build("mmvae", iwae_samples=2, objective="iwae")
    iwae_loss, _ = iwae.training_objective(batch, eps=eps)
    iwae_params = dict(iwae.named_parameters())
    names = [n for n, p in model.named_parameters() if n.startswith(("image_decoder", "text_decoder"))]
    iwae_dec = grads(iwae_loss, [iwae_params[n] for n in names])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(dreg_dec, iwae_dec))
    enc_names = [n for n, p in model.named_parameters() if n.startswith(("tokenizers", "encoders", "experts"))]
    iwae_enc = grads(iwae_loss, [iwae_params[n] for n in enc_names])
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(dreg_enc, iwae_enc) if a is not None)


def test_mmvae_cross_modal_generation_reads_the_text_expert_only() -> None:
    model = build("mmvae")
    batch = tiny_batch(4)
    with torch.no_grad():
        mu, logvar = model.encode(None, batch["text"])
        expert_mu, expert_logvar = model.expert("text", batch["text"])
        images = model.sample_from_text(batch["text"], generator=torch.Generator().manual_seed(0))
        z = expert_mu + torch.randn(expert_mu.shape, generator=torch.Generator().manual_seed(0)) * (
            0.5 * expert_logvar).exp()
    assert torch.equal(mu, expert_mu) and torch.allclose(logvar, expert_logvar, atol=1e-6)
    assert torch.allclose(images, torch.sigmoid(model.image_decoder(z)), atol=1e-6)
    with pytest.raises(ValueError, match="iwae_samples"):
        MODELS.get("mmvae")(iwae_samples=0)
    with pytest.raises(ValueError, match="objective"):
        MODELS.get("mmvae")(objective="elbo")


# ---------------------------------------------------------------------------------------- mixture helpers
def test_mixture_density_and_moments_match_float64_direct_computations() -> None:
    gen = torch.Generator().manual_seed(4)
    mus, logvars = torch.randn(3, 5, 2, generator=gen), torch.randn(3, 5, 2, generator=gen)
    weights = torch.tensor([[0.5, 1, 0, 0.2, 1 / 3], [0.5, 0, 1, 0.3, 1 / 3], [0, 0, 0, 0.5, 1 / 3]])  # (S, B)
    z = torch.randn(4, 5, 2, generator=gen)
    density = sum(weights[s].double() * Normal(mus[s].double(), (0.5 * logvars[s].double()).exp()).log_prob(
        z.double()).sum(-1).exp() for s in range(3))  # (4, B)
    assert torch.allclose(log_mixture_density(z, mus, logvars, weights).double(), density.log(), atol=1e-5)
    mu, logvar = moment_matched_gaussian(mus, logvars, weights)
    w = weights.double().unsqueeze(-1)
    mean = (w * mus.double()).sum(0)
    second = (w * (logvars.double().exp() + mus.double() ** 2)).sum(0)  # E[z²]
    assert torch.allclose(mu.double(), mean, atol=1e-6)
    assert torch.allclose(logvar.exp().double(), second - mean**2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["mopoe", "mmvae"])
def test_validation_loss_is_the_mixture_elbo_with_its_exact_density(name: str) -> None:
    model = build(name)
    batch = tiny_batch(3)
    torch.manual_seed(5)
    with torch.no_grad():
        loss, logs = model.validation_objective(batch)
    torch.manual_seed(5)
    with torch.no_grad():
        mus, logvars, weights = model.components(batch["image"], batch["text"])
        z = mus + torch.randn_like(mus) * (0.5 * logvars).exp()  # one z per component, (S, B, Z)
        qs = [Normal(mus[s].double(), (0.5 * logvars[s].double()).exp()) for s in range(len(mus))]
        expected = []
        for s in range(len(mus)):
            rec_image, rec_text = decode_one_by_one(model, z[s], batch["image"], batch["text"])
            log_q = torch.stack([q.log_prob(z[s].double()).sum(-1) for q in qs]).exp().mean(0).log()
            log_p = Normal(0.0, 1.0).log_prob(z[s].double()).sum(-1)
            expected.append(torch.stack(rec_image) + torch.stack(rec_text) + log_q - log_p)  # text weight 1
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    assert loss.item() == pytest.approx((logs["rec_image"] + logs["rec_text"] + logs["kl"]).item(), rel=1e-5)


# ------------------------------------------------------------------------------------ training and seeds
@pytest.mark.parametrize("name", ["mopoe", "mmvae"])
def test_loss_decreases_over_30_steps_on_a_tiny_batch(name: str) -> None:
    model = build(name, **TINY, lr=3e-3).train()
    batch = tiny_batch(16)
    optimizer = model.configure_optimizers()
    torch.manual_seed(0)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss, _ = model.training_objective(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert all(math.isfinite(v) for v in losses)
    # measured: mopoe 135 -> 113, mmvae 132 -> 109 nats (uniform random pixels keep about 32 nats of entropy)
    assert last < first - 15.0, f"{name}: train_loss {first:.1f} -> {last:.1f}"


@pytest.mark.parametrize("name", ["mopoe", "mmvae"])
def test_objective_and_gradients_are_deterministic_under_a_seed(name: str) -> None:
    def run(seed: int) -> tuple[float, torch.Tensor]:
        model = build(name, seed=0).train()
        torch.manual_seed(seed)
        loss, _ = model.training_objective(tiny_batch(4))
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (a, ga), (b, gb), (c, _) = run(1), run(1), run(2)
    assert a == b and torch.equal(ga, gb)
    assert a != c, "the posterior noise comes from the global RNG"


# ------------------------------------------------------------------------------------- MultiVae reference
def _multivae_wrap(model, ref_cls, config_cls, **config):
    """A MultiVae model whose encoders and decoders are ``model``'s own modules (shared parameters)."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            mu, logvar = self.fn(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, z):
            return ModelOutput(reconstruction=self.fn(z))

    def image_log_prob(recon, target):  # the [0, 1] Bernoulli surrogate (torch's Bernoulli refuses non-binary x)
        return -F.binary_cross_entropy_with_logits(recon, target.expand_as(recon), reduction="none")

    def text_log_prob(recon, target):  # per-position categorical of token ids
        return recon.log_softmax(-1).gather(-1, target.expand(recon.shape[:-1]).unsqueeze(-1)).squeeze(-1)

    cfg = config_cls(n_modalities=2, latent_dim=model.latent_dim, uses_likelihood_rescaling=True,
                     rescale_factors={"image": 1.0, "text": model.text_weight},
                     decoders_dist={"image": "bernoulli", "text": "categorical"}, **config)
    ref = ref_cls(cfg, encoders={m: Encoder(partial(model.expert, m)) for m in model.modalities},
                  decoders={"image": Decoder(model.image_decoder), "text": Decoder(model.text_decoder)})
    ref.recon_log_probs = {"image": image_log_prob, "text": text_log_prob}
    return ref


def test_losses_and_gradients_match_multivae(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("multivae", reason="MultiVae is optional (module docstring)")
    from multivae.data.datasets.base import MultimodalBaseDataset
    from multivae.models import MMVAE as RefMMVAE
    from multivae.models import MMVAEConfig, MoPoE, MoPoEConfig
    from multivae.models.mopoe import mopoe_model

    b = 6
    batch = tiny_batch(b)
    # MoPoE at z = the component means: MultiVae assigns samples 0-1, 2-3, 4-5 to {x}, {w}, {x, w}
    model = build("mopoe", text_weight=3.0)
    ref = _multivae_wrap(model, MoPoE, MoPoEConfig)
    monkeypatch.setattr(mopoe_model, "rsample_from_gaussian", lambda mu, logvar, *args, **kwargs: mu)
    expected = ref(MultimodalBaseDataset(data=dict(batch))).loss
    t = model.subset_terms(batch, eps=torch.zeros(3, b, 3))
    chosen = torch.arange(b) // 2, torch.arange(b)
    ours = (t["rec_image"][chosen] + 3.0 * t["rec_text"][chosen]).mean() + (t["weights"] * t["kl"]).sum(0).mean()
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
    # MMVAE on MultiVae's own posterior draws: the iwae_looser value, and both estimators' gradients
    model = build("mmvae", text_weight=3.0, iwae_samples=3)
    for objective, loss_name in (("iwae", "iwae_looser"), ("dreg", "dreg_looser")):
        ref = _multivae_wrap(model, RefMMVAE, MMVAEConfig, K=3, prior_and_posterior_dist="normal",
                             learn_prior=False, loss=loss_name)
        torch.manual_seed(1)
        out = ref(MultimodalBaseDataset(data=dict(batch)), detailed_output=True)
        eps = torch.stack([(out["zss"][m] - out["qz_xs"][m].loc) / out["qz_xs"][m].scale
                           for m in model.modalities]).detach()  # (M, K, B, Z)
        model.zero_grad()
        (out.loss / b).backward()  # MultiVae sums over the batch
        expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.objective = objective
        model.zero_grad()
        loss, _ = model.training_objective(batch, eps=eps)
        loss.backward()
        if objective == "iwae":  # MultiVae's dreg loss value is the surrogate Σ ŵ log w, ours is the bound
            assert loss.item() == pytest.approx(out.loss.item() / b, rel=1e-5)
        for n, p in model.named_parameters():
            assert torch.allclose(p.grad, expected_grads[n], rtol=1e-3, atol=1e-6), (objective, n)
