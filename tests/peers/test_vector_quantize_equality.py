"""Our VQ layer (``models.vae.vq_vae.VectorQuantizer`` and the VQ-VAE's straight-through / commitment terms)
against lucidrains' vector-quantize-pytorch ``VectorQuantize``, with the codebook and EMA statistics copied.

Configuration of the peer so that it implements the same layer as ours:

* ``decay=0.99`` (its default is 0.8), ``eps=1e-5`` (Laplace smoothing of the EMA counts, as ours);
* ``rotation_trick=False`` (its default for dim > 1 is the rotation trick of Fifty et al., 2024; ours is the
  plain straight-through estimator ``z_e + sg(e − z_e)``);
* ``kmeans_init=False`` and ``threshold_ema_dead_code=0``: no k-means initialization and no dead-code
  replacement (its criterion, EMA count below a threshold, differs from ours, unused for N batches; ours is
  disabled with ``dead_code_steps=0``);
* ``accept_image_fmap=True`` for our (B, D, h, w) grids; ``commitment_weight=1`` so its loss is the bare MSE.

Both initialize the EMA state the same way (counts 1, sums = codebook), so the comparison holds over many steps.
Conversion: its commitment loss is ``F.mse_loss`` averaged over all B·h·w·D elements; ours is summed over the
(D, h, w) grid per image and averaged over the batch: ``ours = peer · D·h·w``. The peer computes in float32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

vqp = pytest.importorskip("vector_quantize_pytorch", reason="vector-quantize-pytorch not installed")

from models import MODELS  # noqa: E402
from models.vae.vq_vae import VectorQuantizer  # noqa: E402

K, D = 16, 4


def peer(decay: float = 0.99) -> torch.nn.Module:
    return vqp.VectorQuantize(
        dim=D, codebook_size=K, decay=decay, eps=1e-5, commitment_weight=1.0, rotation_trick=False,
        kmeans_init=False, threshold_ema_dead_code=0, accept_image_fmap=True, sync_codebook=False,
    )


def copy_state(ours: VectorQuantizer, theirs: torch.nn.Module) -> None:
    """Codebook, EMA sums and counts from ours into the peer's (1, K, D) / (1, K) buffers."""
    cb = theirs._codebook
    with torch.no_grad():
        cb.embed.copy_(ours.codebook.unsqueeze(0))
        cb.embed_avg.copy_(ours.ema_sum.unsqueeze(0))
        cb.cluster_size.copy_(ours.ema_count.unsqueeze(0))


def digits(n: int = 16) -> torch.Tensor:
    from datamodules import DATAMODULES

    dm = DATAMODULES.get("digits")(image_size=16, batch_size=16)
    dm.setup()
    return dm.split_tensors("train")["image"][:n]


def code_grid(seed: int, b: int = 8, h: int = 4, w: int = 4) -> torch.Tensor:
    """Random encoder-like outputs (B, D, h, w), shifted per seed so successive batches differ in distribution."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D, h, w, generator=g) + 0.3 * seed


def assert_same_assignment(ours: torch.Tensor, theirs: torch.Tensor, z_e: torch.Tensor, codebook: torch.Tensor) -> None:
    """Equal nearest-code indices, except where two codes are tied to float32 rounding (then either is nearest)."""
    if torch.equal(ours, theirs):
        return
    flat = VectorQuantizer.flatten(z_e)  # (N, D)
    d2 = torch.cdist(flat.double(), codebook.double()).pow(2)  # (N, K)
    o, t = ours.flatten(), theirs.flatten()
    diff = (o != t).nonzero().flatten()
    gap = (d2[diff, o[diff]] - d2[diff, t[diff]]).abs()
    assert (gap < 1e-4).all(), f"{len(diff)} positions assigned differently, distance gaps {gap.tolist()}"


def test_nearest_code_assignment_equals_peer() -> None:
    """Eval mode (no update): indices and the looked-up vectors for a random codebook and a random grid."""
    torch.manual_seed(0)
    ours = VectorQuantizer(K, D, ema_decay=0.99, dead_code_steps=0)
    theirs = peer().eval()
    copy_state(ours, theirs)
    z_e = code_grid(0, b=16)
    quantize, idx, _ = theirs(z_e)
    ours_idx = ours.indices(z_e)  # (B, h, w)
    assert len(ours_idx.unique()) >= 8
    assert_same_assignment(ours_idx, idx, z_e, ours.codebook)
    torch.testing.assert_close(quantize, ours.lookup(idx), rtol=0, atol=0)


def test_ema_codebook_updates_equal_peer_over_steps() -> None:
    """Training mode: five batches of EMA updates (decay 0.99, Laplace-smoothed counts); codebook, counts and sums
    stay equal step by step, and the codebook really moves."""
    torch.manual_seed(1)
    ours = VectorQuantizer(K, D, ema_decay=0.99, dead_code_steps=0)
    theirs = peer().train()
    copy_state(ours, theirs)
    start = ours.codebook.clone()
    for step in range(5):
        z_e = code_grid(10 + step)
        idx = ours.indices(z_e)
        _, their_idx, _ = theirs(z_e)  # the peer updates its EMA inside the training forward
        assert torch.equal(idx, their_idx), f"step {step}: assignment differs"
        ours.update(z_e, idx)
        cb = theirs._codebook
        torch.testing.assert_close(cb.cluster_size[0], ours.ema_count, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(cb.embed_avg[0], ours.ema_sum, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cb.embed[0], ours.codebook, rtol=1e-5, atol=1e-6)
    assert (ours.codebook - start).abs().max() > 1e-2


def test_commitment_loss_and_straight_through_gradients_equal_peer() -> None:
    """Inside our VQ-VAE: the peer on our encoder output gives the same indices, quantized grid, commitment loss
    (converted) and, with our decoder on its output, the same gradients of rec + β·commitment on every weight."""
    torch.manual_seed(2)
    model = MODELS.get("vq-vae")(image_shape=(1, 16, 16), num_codes=K, latent_dim=D, width=8,
                                 ema_decay=0.99, dead_code_steps=0).train()
    x = digits(16)
    with torch.no_grad():  # spread the codebook over encoder outputs so the batch uses several codes
        flat = model.quantizer.flatten(model.encoder(x))
        pick = torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))[:K]
        model.quantizer.codebook.copy_(flat[pick] + 0.01 * torch.randn(K, D))
        model.quantizer.ema_sum.copy_(model.quantizer.codebook)
    theirs = peer().train()
    copy_state(model.quantizer, theirs)
    twin = MODELS.get("vq-vae")(image_shape=(1, 16, 16), num_codes=K, latent_dim=D, width=8,
                                ema_decay=0.99, dead_code_steps=0).train()
    twin.load_state_dict(model.state_dict())

    t = model._forward_terms(x)
    z_e = twin.encoder(x)  # (B, D, h, w)
    quantize, idx, loss, breakdown = theirs(z_e, return_loss_breakdown=True)
    assert len(t["idx"].unique()) >= 4
    assert torch.equal(idx, t["idx"])
    torch.testing.assert_close(quantize, model.quantizer.lookup(t["idx"]), rtol=1e-6, atol=1e-6)
    d, h, w = z_e.shape[1:]
    assert breakdown.commitment.item() * d * h * w == pytest.approx(t["commitment"].mean().item(), rel=1e-5)
    assert loss.item() == pytest.approx(breakdown.commitment.item(), rel=1e-6)  # weight 1, no other terms

    beta = model.hparams.commitment
    (t["rec"].mean() + beta * t["commitment"].mean()).backward()
    rec_theirs = F.binary_cross_entropy_with_logits(twin.decoder(quantize), x, reduction="none").flatten(1).sum(1)
    (rec_theirs.mean() + beta * breakdown.commitment * d * h * w).backward()
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
