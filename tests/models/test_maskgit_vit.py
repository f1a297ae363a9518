"""MaskGIT (``maskgit``) and the Vision Transformer (``ViTEncoder``, ``vit``): the shared model checks, the cosine
decoding schedule, reproducible sampling, the training mask distribution, the masked-only loss, and ViT shapes,
patch coverage, errors and a tiny learning run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from models.transformer.maskgit import (
    MaskGIT, cosine_mask_ratio, masked_cross_entropy, num_masked_after_step, random_token_mask, sample_mask_ratios,
)
from models.transformer.vit import EncoderBlock, ViTClassifier, ViTEncoder
from tests.models.tester import ModelTesterMixin

TINY_MASKGIT = {"dim": 32, "depth": 1, "heads": 2, "token_size": 8, "num_steps": 4}
TINY_VIT = {"dim": 16, "depth": 1, "heads": 2}


class TestMaskGIT(ModelTesterMixin):
    model_name = "maskgit"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    hparams = TINY_MASKGIT


class TestViT(ModelTesterMixin):
    model_name = "vit"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 16}
    hparams = TINY_VIT


def tiny_maskgit(seed: int = 0, **hparams) -> MaskGIT:
    torch.manual_seed(seed)
    return MaskGIT(image_shape=(1, 16, 16), **{**TINY_MASKGIT, **hparams}).eval()


# ------------------------------------------------------------------------------------------ MaskGIT: decoding
def test_schedule_counts_by_hand() -> None:
    # N = 64, T = 4: floor(64·cos(π/8)) = 59, floor(64·cos(π/4)) = 45, floor(64·cos(3π/8)) = 24, then 0.
    assert [num_masked_after_step(64, t, 4) for t in range(4)] == [59, 45, 24, 0]
    assert [num_masked_after_step(10, t, 1) for t in range(1)] == [0]
    with pytest.raises(ValueError):
        num_masked_after_step(64, 4, 4)


@pytest.mark.parametrize("num_steps", [1, 4, 8])
def test_decoding_fills_every_position_in_exactly_num_steps_on_the_cosine_schedule(num_steps: int) -> None:
    model = tiny_maskgit()
    n, num_tokens = 3, model.seq_len
    assert num_tokens == 64  # token_size 8
    trace = model.generate_tokens(n, torch.Generator().manual_seed(0), num_steps=num_steps)
    assert len(trace.tokens) == num_steps + 1
    assert (trace.tokens[0] == model.mask_id).all()
    expected = [math.floor(num_tokens * math.cos(math.pi / 2 * (t + 1) / num_steps)) for t in range(num_steps)]
    expected[-1] = 0
    assert trace.masked_counts == [[k] * n for k in expected]
    final = trace.tokens[-1]
    assert (final != model.mask_id).all() and final.min() >= 0 and final.max() < model.vocab_size


def test_decoded_tokens_are_never_changed_later() -> None:
    model = tiny_maskgit(choice_temperature=10.0)  # strong noise: confidence ranks shuffle between steps
    trace = model.generate_tokens(4, torch.Generator().manual_seed(1), num_steps=8)
    final = trace.tokens[-1]
    for state in trace.tokens:
        decoded = state != model.mask_id
        assert torch.equal(state[decoded], final[decoded])
    for before, after in zip(trace.tokens, trace.tokens[1:]):
        assert not ((before != model.mask_id) & (after == model.mask_id)).any(), "a decoded token was re-masked"


def test_sampling_is_reproducible_with_a_generator_and_differs_with_another() -> None:
    model = tiny_maskgit()
    a = model.sample(4, generator=torch.Generator().manual_seed(3))
    b = model.sample(4, generator=torch.Generator().manual_seed(3))
    c = model.sample(4, generator=torch.Generator().manual_seed(4))
    assert a.shape == (4, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_confident_model_decodes_its_prediction() -> None:
    """A model whose head always predicts token 5 with certainty must generate all-5 sequences."""
    model = tiny_maskgit()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-1e4)
        model.head.bias[5] = 1e4
    tokens = model.generate_tokens(2, torch.Generator().manual_seed(0)).tokens[-1]
    assert (tokens == 5).all()


# ------------------------------------------------------------------------------------------ MaskGIT: training
def test_training_mask_ratio_follows_the_cosine_distribution() -> None:
    ratios = sample_mask_ratios(200_000, torch.Generator().manual_seed(0))
    assert ratios.mean().item() == pytest.approx(2 / math.pi, abs=3e-3)  # E[cos(πu/2)] = 2/π
    # CDF of r = cos(πu/2): P(r <= x) = 1 - (2/π)·arccos(x); Kolmogorov–Smirnov against it.
    ks = stats.kstest(ratios[:20_000].numpy(), lambda x: 1 - 2 / math.pi * torch.arccos(torch.as_tensor(x)).numpy())
    assert ks.pvalue > 1e-3, ks
    schedule = cosine_mask_ratio(torch.tensor([0.0, 1 / 3, 1.0])).float()
    assert torch.allclose(schedule, torch.tensor([1.0, math.sqrt(3) / 2, 0.0]), atol=1e-6)


def test_training_masks_at_least_one_position_at_the_sampled_fraction() -> None:
    num_tokens = 64
    mask = random_token_mask(20_000, num_tokens, torch.Generator().manual_seed(0))
    counts = mask.sum(1)
    assert mask.dtype == torch.bool and mask.shape == (20_000, num_tokens)
    assert counts.min() >= 1 and counts.max() <= num_tokens
    # ceil(r·N)/N is on average 2/π plus about half a position
    assert (counts.float() / num_tokens).mean().item() == pytest.approx(2 / math.pi + 0.5 / num_tokens, abs=0.01)
    assert mask.float().mean(0).std() < 0.02  # every position is masked equally often


def test_loss_is_over_masked_positions_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 5, requires_grad=True)
    targets = torch.randint(0, 5, (2, 6))
    mask = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    loss = masked_cross_entropy(logits, targets, mask)
    reference = F.cross_entropy(logits[mask], targets[mask])  # the 5 masked positions only
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    other = targets.clone()
    other[~mask] = (other[~mask] + 1) % 5  # change every target at an unmasked position
    assert masked_cross_entropy(logits, other, mask).item() == loss.item()
    changed = targets.clone()
    changed[0, 0] = (changed[0, 0] + 1) % 5  # a masked position
    assert masked_cross_entropy(logits, changed, mask).item() != loss.item()
    loss.backward()
    assert (logits.grad[~mask] == 0).all() and (logits.grad[mask].abs().sum(-1) > 0).all()


def test_model_never_sees_the_tokens_it_must_predict() -> None:
    model = tiny_maskgit()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (4, model.seq_len), generator=gen)
    mask = random_token_mask(4, model.seq_len, gen)
    loss, _ = model.masked_loss(tokens, mask)
    expected = masked_cross_entropy(model(tokens.masked_fill(mask, model.mask_id)), tokens, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    leaked = tokens.masked_fill(mask, 0)  # other true tokens at the masked positions: same input, same logits
    assert torch.equal(model(leaked.masked_fill(mask, model.mask_id)), model(tokens.masked_fill(mask, model.mask_id)))


def test_maskgit_learns_to_use_the_context_of_real_digits() -> None:
    """After 40 steps the masked-token cross-entropy beats the best context-free guess (the empirical token
    frequencies), which only a model that reads the unmasked neighbours can do."""
    from datamodules import DATAMODULES

    dm = DATAMODULES.get("digits")(image_size=16, batch_size=32)
    dm.setup()
    images = dm.split_tensors("train")["image"][:32]
    model = tiny_maskgit(lr=3e-3).train()
    tokens = model.tokenizer.encode(images)  # (32, 64)
    val_mask = random_token_mask(len(tokens), model.seq_len, torch.Generator().manual_seed(9))
    freqs = torch.bincount(tokens.flatten(), minlength=model.vocab_size).float() / tokens.numel()
    unigram = -freqs.clamp_min(1e-12).log()[tokens][val_mask].mean().item()
    with torch.no_grad():
        before, _ = model.masked_loss(tokens, val_mask)
    opt = model.configure_optimizers()
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        loss, _ = model.masked_loss(tokens, random_token_mask(len(tokens), model.seq_len, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, _ = model.masked_loss(tokens, val_mask)
    assert before.item() == pytest.approx(math.log(model.vocab_size), abs=0.3)  # untrained: about uniform
    assert after.item() < 0.9 * unigram, f"masked CE {before.item():.3f} -> {after.item():.3f}, unigram {unigram:.3f}"


# ------------------------------------------------------------------------------------------------------- ViT
@pytest.mark.parametrize(
    ("image_shape", "patch_size", "pad", "num_patches"),
    [((1, 16, 16), 4, False, 16), ((3, 32, 32), 8, False, 16), ((1, 28, 28), 7, False, 16),
     ((1, 8, 12), 4, False, 6), ((1, 28, 28), 8, True, 16), ((3, 7, 9), 4, True, 6)],
)
def test_vit_shapes(image_shape: tuple[int, int, int], patch_size: int, pad: bool, num_patches: int) -> None:
    vit = ViTEncoder(image_shape, patch_size=patch_size, dim=16, depth=1, heads=2, pad=pad)
    x = torch.rand(3, *image_shape)
    tokens = vit.forward_tokens(x)
    assert vit.num_patches == num_patches
    assert tokens.shape == (3, 1 + num_patches, 16)
    out = vit(x)
    assert out.shape == (3, vit.out_dim) and vit.out_dim == 16
    assert torch.equal(out, tokens[:, 0])
    assert torch.allclose(out.mean(-1), torch.zeros(3), atol=1e-5)  # after the final LayerNorm (unit weight)


def test_vit_cls_output_depends_on_every_patch() -> None:
    torch.manual_seed(0)
    vit = ViTEncoder((1, 12, 16), patch_size=4, dim=16, depth=2, heads=2)
    x = torch.rand(2, 1, 12, 16, requires_grad=True)
    vit(x).pow(2).sum().backward()
    patch_grads = x.grad.abs().view(2, 1, 3, 4, 4, 4).sum((1, 3, 5))  # (B, rows, cols) of patches
    assert (patch_grads > 0).all(), patch_grads


def test_vit_padding_equals_explicit_zero_padding() -> None:
    torch.manual_seed(0)
    padded = ViTEncoder((1, 7, 6), patch_size=4, dim=16, depth=1, heads=2, pad=True).eval()
    plain = ViTEncoder((1, 8, 8), patch_size=4, dim=16, depth=1, heads=2).eval()
    plain.load_state_dict(padded.state_dict())
    x = torch.rand(2, 1, 7, 6)
    assert torch.allclose(padded(x), plain(F.pad(x, (0, 2, 0, 1))), atol=1e-6)


def test_vit_bad_patch_size_and_heads_give_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"patch_size 5 does not divide the image size 16x16.*\[1, 2, 4, 8, 16\]"):
        ViTEncoder((1, 16, 16), patch_size=5)
    with pytest.raises(ValueError, match="pad=True"):
        ViTClassifier(image_shape=(1, 28, 28), patch_size=8)
    with pytest.raises(ValueError, match="divisible by heads"):
        ViTEncoder((1, 16, 16), dim=30, heads=4)
    vit = ViTEncoder((1, 16, 16), dim=16, depth=1, heads=2)
    with pytest.raises(ValueError, match="expects images of shape"):
        vit(torch.rand(1, 1, 8, 8))


def test_encoder_block_matches_torch_transformer_encoder_layer() -> None:
    torch.manual_seed(0)
    block = EncoderBlock(16, heads=4, mlp_ratio=2).eval()
    ref = torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        ref.linear1.load_state_dict(block.mlp[0].state_dict())
        ref.linear2.load_state_dict(block.mlp[3].state_dict())
        ref.norm1.load_state_dict(block.norm1.state_dict())
        ref.norm2.load_state_dict(block.norm2.state_dict())
        x = torch.randn(3, 5, 16)
        assert torch.allclose(block(x), ref(x), atol=1e-5)


def test_tiny_vit_classifier_learns_a_separable_task() -> None:
    """4 classes, each a fixed binary 4×4 pattern stamped on one random patch of an 8×8 noise image. Chance is 25 %.

    (The pattern's content, not its place, names the class: a [CLS] token that attends uniformly at
    initialization already sees it, so a few dozen steps suffice.)
    """
    gen = torch.Generator().manual_seed(0)
    patterns = (torch.rand(4, 4, 4, generator=gen) > 0.5).float()  # (K, 4, 4)

    def make(n: int) -> dict[str, torch.Tensor]:
        labels = torch.randint(0, 4, (n,), generator=gen)
        where = torch.randint(0, 4, (n,), generator=gen)  # which of the 2×2 patches holds the pattern
        images = 0.3 * torch.rand(n, 1, 8, 8, generator=gen)
        for i, (label, patch) in enumerate(zip(labels.tolist(), where.tolist())):
            r, c = divmod(patch, 2)
            images[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 0.7 * patterns[label]
        return {"image": images, "label": labels}

    torch.manual_seed(0)
    model = ViTClassifier(image_shape=(1, 8, 8), num_classes=4, patch_size=4, lr=3e-3, **TINY_VIT)
    train, test = make(128), make(128)
    opt = model.configure_optimizers()

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            return (model.predict_logits(test).argmax(-1) == test["label"]).float().mean().item()

    before = accuracy()
    model.train()
    for step in range(40):
        idx = torch.arange(32) + 32 * (step % 4)
        loss = F.cross_entropy(model.predict_logits({k: v[idx] for k, v in train.items()}), train["label"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert before < 0.5
    assert after > 0.9, f"test accuracy {before:.2f} -> {after:.2f} after 40 steps (chance 0.25)"
