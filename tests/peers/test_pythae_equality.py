"""Our VAE, β-VAE, InfoVAE and VQ-VAE objectives against pythae's (Chadebec et al., NeurIPS 2022 D&B track).

pythae's models are built on *our* encoder / decoder networks (``tests.peers.adapters``: deep copies with equal
weights), run on the same fixed batch with the same global-RNG seed, and each loss term — and its gradient with
respect to every weight — is compared with ours. Both libraries draw the posterior noise as ``randn_like`` of a
(B, Z) tensor and (InfoVAE) the prior sample right after it, so equal seeds give equal noise; the tests assert
the sampled z too, so a change in either library's draw order fails loudly rather than silently loosening.

Conversions (where the two objectives are written differently):

* Reconstruction: pythae's ``"bce"`` is ``F.binary_cross_entropy(sigmoid(logits), x)`` summed over pixels (the
  decoder adapter applies the sigmoid), ours ``binary_cross_entropy_with_logits(logits, x)`` summed over pixels:
  the same Bernoulli NLL in nats per image. Both then average over the batch.
* KL / β: both analytic ``KL(N(mu, diag σ²) || N(0, I))`` summed over z, batch mean, weighted by β.
* InfoVAE: pythae's ``INFOVAE_MMD`` with ``lbd`` = our ``lambda_mmd``, the same α, ``kernel_bandwidth = 1`` and
  ``scales = None`` (one kernel: pythae's IMQ constant is ``scale · 2 · latent_dim · bandwidth²``, our
  ``C = 2·latent_dim``; its RBF is ``exp(-‖a−b‖² / C)`` with the same C). Both use the unbiased MMD² (diagonals
  dropped from the within-sample terms) and add ``(α + λ − 1)·MMD²`` to the per-image loss.
* VQ-VAE: pythae's quantizer losses are ``F.mse_loss(..., reduction="mean")`` over all B·h·w·D elements, ours
  squared errors summed over the (D, h, w) grid per image, then averaged over the batch:
  ``ours = pythae · D·h·w``. pythae's VQ-VAE reconstruction term is an MSE only, so our Bernoulli term is
  checked through the decoder output it is computed from (pythae's ``recon_x`` = sigmoid of our logits at the
  straight-through code) and through its gradient, which reaches the encoder through pythae's straight-through
  estimator. pythae's quantizer multiplies a float32 one-hot by the codebook, so the VQ-VAE checks run in
  float32; the Gaussian ones in float64.
* IWAE bound: pythae's ``get_nll`` (per image, ``batch_size`` posterior draws) against our ``nll`` with the same
  K draws (both libraries' CPU ``randn`` of K·Z float32 numbers from equally seeded generators).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("pythae", reason="pythae not installed (pip install pythae --no-deps)")

from pythae.models import INFOVAE_MMD, VQVAE as PythaeVQVAE  # noqa: E402
from pythae.models import BetaVAE as PythaeBetaVAE  # noqa: E402
from pythae.models import BetaVAEConfig, INFOVAE_MMD_Config, VQVAEConfig  # noqa: E402

from models import MODELS  # noqa: E402
from tests.peers.adapters import gaussian_adapters, pythae_vae, vq_adapters  # noqa: E402

SHAPE = (1, 16, 16)
TINY = {"latent_dim": 4, "width": 8}
F64 = {"rel": 1e-10, "abs": 1e-10}


def digits(n: int = 16, split: str = "train") -> torch.Tensor:
    """A fixed batch of real 16×16 digits in [0, 1] (non-binary: exercises the Bernoulli surrogate)."""
    from datamodules import DATAMODULES

    dm = DATAMODULES.get("digits")(image_size=16, batch_size=16)
    dm.setup()
    return dm.split_tensors(split)["image"][:n]


def build(name: str, seed: int = 0, **hparams):
    torch.manual_seed(seed)
    return MODELS.get(name)(image_shape=SHAPE, **{**TINY, **hparams})


def assert_grads_equal(ours: torch.nn.Module, theirs: torch.nn.Module, rtol: float, atol: float) -> None:
    """Gradients of equal-architecture modules, parameter by parameter (same order, same shapes)."""
    pairs = list(zip(ours.parameters(), theirs.parameters(), strict=True))
    assert pairs
    for i, (a, b) in enumerate(pairs):
        assert a.grad is not None and b.grad is not None, f"parameter {i} got no gradient"
        torch.testing.assert_close(a.grad, b.grad, rtol=rtol, atol=atol, msg=lambda m, i=i: f"param {i}: {m}")


def gaussian_pair(model, pythae_model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, theirs) as modules holding encoder then decoder, for gradient comparison in the same order."""
    return (torch.nn.ModuleList([model.encoder, model.decoder]),
            torch.nn.ModuleList([pythae_model.encoder.net, pythae_model.decoder.net]))


# --------------------------------------------------------------------------------------------- Gaussian VAEs
def test_adapters_reproduce_our_posterior_and_decoder() -> None:
    """The pythae-side networks compute exactly our (mu, logvar) and Bernoulli mean (the premise of every test)."""
    model = build("vae").double().eval()
    theirs = pythae_vae(model).double().eval()
    x = digits(8).double()
    with torch.no_grad():
        mu, logvar = model(x)
        enc = theirs.encoder(x)
        assert torch.equal(enc.embedding, mu) and torch.equal(enc.log_covariance, logvar)
        assert torch.equal(theirs.decoder(mu).reconstruction, torch.sigmoid(model.decoder(mu)))


@pytest.mark.parametrize("seed", [0, 1])
def test_vae_loss_terms_and_gradients_equal_pythae(seed: int) -> None:
    """Plain VAE (β = 1): reconstruction (Bernoulli NLL), KL and the total, per batch, and d(loss)/d(weights)."""
    model = build("vae", seed).double().train()
    theirs = pythae_vae(model).double().train()
    x = digits(16).double()
    torch.manual_seed(100 + seed)
    rec, kl, z = model._loss_terms(x)
    loss = (rec + kl).mean()
    torch.manual_seed(100 + seed)
    out = theirs({"data": x})
    assert torch.equal(out.z, z)  # same posterior draw
    assert out.recon_loss.item() == pytest.approx(rec.mean().item(), **F64)
    assert out.reg_loss.item() == pytest.approx(kl.mean().item(), **F64)
    assert out.loss.item() == pytest.approx(loss.item(), **F64)
    # A real batch: the terms are far from trivial (~0.5–0.7 nats per pixel, KL > 0).
    assert rec.mean() > 0.3 * math.prod(SHAPE) and kl.mean() > 0
    # Our training_loss is this same value (re-seeded: it draws the same noise).
    torch.manual_seed(100 + seed)
    ours_loss, _ = model.training_loss(x, "train")
    assert ours_loss.item() == pytest.approx(out.loss.item(), **F64)
    ours_loss.backward()
    out.loss.backward()
    assert_grads_equal(*gaussian_pair(model, theirs), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("beta", [4.0, 0.5])
def test_beta_vae_weighting_equals_pythae(beta: float) -> None:
    """β-VAE: loss = rec + β·KL (pythae ``BetaVAE``, same β); β < 1 too, to catch a swapped weight."""
    model = build("beta-vae", beta=beta).double().train()
    config = BetaVAEConfig(input_dim=SHAPE, latent_dim=TINY["latent_dim"], reconstruction_loss="bce", beta=beta)
    theirs = PythaeBetaVAE(config, **gaussian_adapters(model)).double().train()
    x = digits(16).double()
    torch.manual_seed(7)
    loss, logs = model.training_loss(x, "train")
    torch.manual_seed(7)
    out = theirs({"data": x})
    assert out.recon_loss.item() == pytest.approx(logs["rec"].item(), **F64)
    assert out.reg_loss.item() == pytest.approx(logs["kl"].item(), **F64)
    assert out.loss.item() == pytest.approx(loss.item(), **F64)
    # β is really in the total: it differs from the β = 1 objective by (β − 1)·KL.
    assert loss.item() - (logs["rec"] + logs["kl"]).item() == pytest.approx((beta - 1) * logs["kl"].item(), rel=1e-9)
    loss.backward()
    out.loss.backward()
    assert_grads_equal(*gaussian_pair(model, theirs), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("kernel", "alpha", "lambda_mmd"),
    [("imq", 0.0, 100.0), ("imq", 0.25, 10.0), ("rbf", 0.0, 100.0), ("rbf", 1.0, 1000.0)],
)
def test_info_vae_mmd_and_loss_equal_pythae(kernel: str, alpha: float, lambda_mmd: float) -> None:
    """InfoVAE: the unbiased MMD² between the batch's posterior draws and as many N(0, I) draws (same kernel, same
    bandwidth C = 2·latent_dim), the (1 − α)·KL and (α + λ − 1)·MMD² weights, the total and its gradients."""
    model = build("info-vae", kernel=kernel, alpha=alpha, lambda_mmd=lambda_mmd).double().train()
    config = INFOVAE_MMD_Config(
        input_dim=SHAPE, latent_dim=TINY["latent_dim"], reconstruction_loss="bce",
        kernel_choice=kernel, alpha=alpha, lbd=lambda_mmd, kernel_bandwidth=1.0, scales=None,
    )
    theirs = INFOVAE_MMD(config, **gaussian_adapters(model)).double().train()
    x = digits(16).double()
    torch.manual_seed(11)
    loss, logs = model.training_loss(x, "train")
    torch.manual_seed(11)
    out = theirs({"data": x})
    assert out.recon_loss.item() == pytest.approx(logs["rec"].item(), **F64)
    assert out.reg_loss.item() == pytest.approx(logs["kl"].item(), **F64)
    assert out.mmd_loss.item() == pytest.approx(logs["mmd"].item(), rel=1e-8, abs=1e-12)
    assert out.loss.item() == pytest.approx(loss.item(), **F64)
    # The MMD term is not negligible in the comparison (an untrained encoder's q(z) is far from N(0, I)).
    assert abs(logs["mmd"].item()) > 1e-4
    loss.backward()
    out.loss.backward()
    assert_grads_equal(*gaussian_pair(model, theirs), rtol=1e-7, atol=1e-10)


def test_iwae_nll_equals_pythae_get_nll() -> None:
    """Our importance-weighted bound (K draws) against pythae's ``get_nll`` with the same K draws, per image.

    pythae drops the log 2π constants of log p(z) and log q(z|x) (they cancel); it returns the mean log-likelihood
    of the images it is given, so it is called per image and negated.
    """
    model = build("vae", 3).eval()
    theirs = pythae_vae(model).eval()
    x = digits(4, "test")
    k = 32
    bounds = []
    for i in range(len(x)):
        ours = model.nll(x[i : i + 1], num_samples=k, generator=torch.Generator().manual_seed(50 + i))
        torch.manual_seed(50 + i)
        log_p = theirs.get_nll(x[i : i + 1], n_samples=k, batch_size=k)
        assert -log_p == pytest.approx(ours.item(), rel=1e-5)
        bounds.append(ours.item())
    # K matters: the K = 1 bound of image 0 differs, so the equalities are not a K-independent accident.
    single = model.nll(x[:1], num_samples=1, generator=torch.Generator().manual_seed(50))
    assert single.item() != pytest.approx(bounds[0], rel=1e-5)


# ---------------------------------------------------------------------------------------------------- VQ-VAE
VQ = {"num_codes": 16, "latent_dim": 4, "width": 8, "commitment": 0.25}


def vq_pair(ema: bool, seed: int = 0):
    """Our VQ-VAE (dead-code resets off: pythae has none) and pythae's on copies of its networks and codebook."""
    torch.manual_seed(seed)
    model = MODELS.get("vq-vae")(image_shape=SHAPE, ema_decay=0.99 if ema else 0.0, dead_code_steps=0, **VQ).train()
    config = VQVAEConfig(
        input_dim=SHAPE, latent_dim=VQ["latent_dim"], num_embeddings=VQ["num_codes"],
        commitment_loss_factor=VQ["commitment"], quantization_loss_factor=1.0, use_ema=ema, decay=0.99,
    )
    theirs = PythaeVQVAE(config, **vq_adapters(model)).train()
    copy_codebook(model, theirs)
    return model, theirs


def copy_codebook(model, theirs) -> None:
    """Our codebook (and EMA statistics) into pythae's quantizer."""
    q = theirs.quantizer
    with torch.no_grad():
        if model.hparams.ema_decay > 0:
            q.embeddings.copy_(model.quantizer.codebook)
            q.ema_embed.copy_(model.quantizer.ema_sum)
            q.cluster_size = model.quantizer.ema_count.clone()
        else:
            q.embeddings.weight.copy_(model.quantizer.codebook)


def spread_codebook(model) -> torch.Tensor:
    """A digit batch whose codes spread over several codebook entries: the codebook is moved onto encoder outputs
    (random ones, a fixed choice) so the assignment test is not decided by one code."""
    x = digits(16)
    with torch.no_grad():
        flat = model.quantizer.flatten(model.encoder(x))  # (B·h·w, D)
        pick = torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))[: model.quantizer.num_codes]
        model.quantizer.codebook.data.copy_(flat[pick] + 0.01 * torch.randn_like(flat[pick]))
        if model.hparams.ema_decay > 0:
            model.quantizer.ema_sum.copy_(model.quantizer.codebook)
    return x


@pytest.mark.parametrize("ema", [False, True])
def test_vq_vae_assignment_losses_and_gradients_equal_pythae(ema: bool) -> None:
    """Nearest-code indices, the straight-through quantized grid the decoder sees, commitment (+ codebook) loss
    (converted: ours = pythae · D·h·w), and the gradients of rec + VQ losses w.r.t. encoder, decoder, codebook."""
    model, theirs = vq_pair(ema)
    x = spread_codebook(model)
    copy_codebook(model, theirs)
    t = model._forward_terms(x)
    out = theirs({"data": x})
    idx = t["idx"]  # (B, h, w)
    assert len(idx.unique()) >= 4, "the batch should use several codes"
    assert torch.equal(out.quantized_indices.squeeze(1), idx)
    z_q = model.quantizer.lookup(idx)  # (B, D, h, w)
    torch.testing.assert_close(out.z, z_q, rtol=1e-6, atol=1e-7)
    z_st = t["z_e"] + (z_q - t["z_e"]).detach()
    torch.testing.assert_close(out.recon_x, torch.sigmoid(model.decoder(z_st)), rtol=1e-6, atol=1e-7)

    d, h, w = t["z_e"].shape[1:]
    ours_vq = (VQ["commitment"] * t["commitment"] + t.get("codebook", 0.0)).mean()
    assert ours_vq.item() == pytest.approx(out.vq_loss.item() * d * h * w, rel=1e-5)
    assert ours_vq.item() > 1e-4
    if not ema:  # the codebook term ‖sg(z_e) − e‖² equals the commitment distance ‖z_e − sg(e)‖² in value
        assert t["codebook"].mean().item() == pytest.approx(t["commitment"].mean().item(), rel=1e-6)

    # Gradients: our Bernoulli reconstruction, and pythae's BCE on its own recon_x (the same NLL), plus the VQ terms.
    ours_loss = t["rec"].mean() + ours_vq
    rec_theirs = F.binary_cross_entropy(out.recon_x, x, reduction="none").flatten(1).sum(1).mean()
    (rec_theirs + out.vq_loss * d * h * w).backward()
    ours_loss.backward()
    ours_mods = torch.nn.ModuleList([model.encoder, model.decoder])
    theirs_mods = torch.nn.ModuleList([theirs.encoder.net, theirs.decoder.net])
    assert_grads_equal(ours_mods, theirs_mods, rtol=1e-4, atol=1e-6)
    if not ema:
        their_grad = theirs.quantizer.embeddings.weight.grad
        torch.testing.assert_close(model.quantizer.codebook.grad, their_grad, rtol=1e-4, atol=1e-7)


def test_vq_vae_ema_update_equals_pythae_for_one_step() -> None:
    """One training batch's EMA codebook update (decay 0.99, Laplace-smoothed counts, eps 1e-5).

    Only the first step is compared: pythae stores the *smoothed* counts back into ``cluster_size`` (Sonnet and ours
    keep the raw EMA counts and smooth only for the division), so from the second step on the two codebooks drift
    apart by O(eps) per step. The multi-step EMA is checked against vector-quantize-pytorch instead.
    """
    model, theirs = vq_pair(ema=True)
    x = digits(16)
    t = model._forward_terms(x)
    before = model.quantizer.codebook.clone()
    theirs({"data": x})  # pythae updates its EMA codebook inside the training forward
    model._update_after_batch(t["z_e"], t["idx"])
    assert not torch.allclose(model.quantizer.codebook, before)  # the update moved the codebook
    torch.testing.assert_close(theirs.quantizer.embeddings, model.quantizer.codebook, rtol=1e-5, atol=1e-6)
