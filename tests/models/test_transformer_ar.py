"""Autoregressive transformers over image tokens: ``gpt``, ``transformer-xl``, ``text2image-gpt`` and tokenizers.

Besides the shared model checks: the pixel tokenizer against hand-computed tokens, the VQ tokenizer on a saved
random-init ``vq-vae``, KV-cache decoding against full recomputation, causality, the NLL against hand-summed
cross-entropies and against normalization (it sums to one over every sequence), Transformer-XL's memory (it
matters, and no gradient flows into it) and relative-shift trick, classifier-free guidance against its formula,
and the GPT / Transformer-XL parameter match.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from models.transformer.gpt import GPT, AutoregressiveImageModel
from models.transformer.text2image_gpt import Text2ImageGPT
from models.transformer.tokenizers import PixelTokenizer, VQTokenizer, build_tokenizer
from models.transformer.transformer_xl import TransformerXL, rel_shift
from tests.models.tester import ModelTesterMixin

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "token_size": 4}
SMALL_IMAGE = (1, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CPU is shared: one intra-op thread is much faster than oversubscribed threads for these tiny nets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_gpt(seed: int = 0, **hparams) -> GPT:
    torch.manual_seed(seed)
    return GPT(**{"image_shape": SMALL_IMAGE, "n_layer": 2, "n_head": 2, "n_embd": 32, "token_size": 4,
                  **hparams}).eval()


def tiny_xl(seed: int = 0, **hparams) -> TransformerXL:
    torch.manual_seed(seed)
    return TransformerXL(**{"image_shape": SMALL_IMAGE, "n_layer": 2, "n_head": 2, "n_embd": 32, "token_size": 4,
                            "segment_len": 5, "mem_len": 6, **hparams}).eval()


def tiny_t2i(seed: int = 0, **hparams) -> Text2ImageGPT:
    torch.manual_seed(seed)
    return Text2ImageGPT(**{"image_shape": SMALL_IMAGE, "vocab_size": 12, "text_length": 5, "n_layer": 2,
                            "n_head": 2, "n_embd": 32, "token_size": 4, **hparams}).eval()


def random_tokens(model: AutoregressiveImageModel, b: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(model.vocab, (b, model.seq_len), generator=gen)


# ------------------------------------------------------------------------------------------ shared model checks
class TestGPT(ModelTesterMixin):
    model_name = "gpt"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 8}
    hparams = TINY


class TestTransformerXL(ModelTesterMixin):
    model_name = "transformer-xl"
    datamodule_name = "digits"
    datamodule_args = {"image_size": 8}
    hparams = {**TINY, "segment_len": 6, "mem_len": 6}


class TestText2ImageGPT(ModelTesterMixin):
    model_name = "text2image-gpt"
    datamodule_name = "captioned-digits"
    datamodule_args = {"image_size": 8}
    hparams = {**TINY, "guidance_scale": 2.0, "text_loss_weight": 0.1}


# ------------------------------------------------------------------------------------------------- tokenizers
def test_pixel_tokenizer_known_intensities_in_raster_order() -> None:
    tok = PixelTokenizer((1, 2, 3), levels=16)
    x = torch.tensor([[0.0, 0.0624, 0.0625], [0.5, 0.99, 1.0]]).view(1, 1, 2, 3)
    assert tok.encode(x).tolist() == [[0, 0, 1, 8, 15, 15]]
    assert (tok.vocab_size, tok.seq_len, tok.describe()) == (16, 6, "pixel-16levels-2x3")
    assert torch.allclose(tok.decode(torch.tensor([[0, 15, 8, 1, 2, 3]])).flatten(),
                          (torch.tensor([0, 15, 8, 1, 2, 3]) + 0.5) / 16)


@pytest.mark.parametrize("levels", [2, 16, 256])
def test_pixel_tokenizer_round_trip_error_is_at_most_half_a_level(levels: int) -> None:
    tok = PixelTokenizer((1, 8, 8), levels=levels)
    x = torch.cat([torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                   torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)])
    tokens = tok.encode(x)
    assert tokens.dtype == torch.long and tokens.shape == (6, 64)
    assert tokens.min() >= 0 and tokens.max() < levels
    err = (tok.decode(tokens) - x).abs().max()
    assert err <= 1 / (2 * levels) + 1e-6


def test_pixel_tokenizer_downsamples_by_area_and_upsamples_back() -> None:
    tok = PixelTokenizer((1, 4, 4), levels=4, size=2)
    x = torch.arange(16.0).view(1, 1, 4, 4) / 16
    means = x.view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4).mean(1)  # 2×2 blocks in raster order
    assert tok.encode(x).tolist() == [torch.floor(means * 4).long().tolist()]
    assert tok.seq_len == 4 and tok.describe() == "pixel-4levels-2x2"
    out = tok.decode(tok.encode(x))
    assert out.shape == (1, 1, 4, 4) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="grayscale"):
        PixelTokenizer((3, 4, 4))


def test_vq_tokenizer_loads_a_saved_vq_vae(tmp_path: Path) -> None:
    from models.vae.vq_vae import VQVAE

    torch.manual_seed(0)
    vq = VQVAE(image_shape=(1, 16, 16), num_codes=32, latent_dim=4, width=8)
    path = tmp_path / "vq.pt"
    vq.save_weights(path)
    tok = VQTokenizer(path)
    assert (tok.vocab_size, tok.seq_len, tuple(tok.image_shape)) == (32, 16, (1, 16, 16))
    assert sum(p.numel() for p in tok.parameters() if p.requires_grad) == 0
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    tokens = tok.encode(x)
    assert tokens.shape == (3, 16) and tokens.dtype == torch.long and tokens.max() < 32
    assert torch.equal(tokens, vq.eval().encode_indices(x).flatten(1))
    images = tok.decode(tokens)
    assert images.shape == (3, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    tok.train()
    assert not tok.vq.training  # stays frozen in eval mode

    model = GPT(image_shape=(1, 16, 16), n_layer=1, n_head=2, n_embd=16, tokenizer="vq",
                tokenizer_weights=str(path)).eval()
    assert (model.vocab, model.seq_len, model.likelihood_dims()) == (32, 16, 16)
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 16, 16)
    with pytest.raises(NotImplementedError, match="codes, not pixels"):
        model.nll(x)
    with pytest.raises(ValueError, match="encodes images"):
        build_tokenizer((1, 28, 28), kind="vq", weights=str(path))


def test_vq_tokenizer_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        VQTokenizer(tmp_path / "nope.pt")
    message = str(info.value)
    assert "nope.pt" in message and "vq-vae" in message and "bench run" in message


# ------------------------------------------------------------------------------------------ KV cache, causality
def test_kv_cache_logits_equal_full_forward_logits() -> None:
    model = tiny_gpt()
    tokens = random_tokens(model)
    idx = model.build_inputs(tokens)  # (B, N)
    full, _ = model(idx)
    logits, past = model(idx[:, :5])  # a chunk, then one token at a time
    steps = [logits]
    for t in range(5, idx.shape[1]):
        logits, past = model(idx[:, t:t + 1], past=past)
        steps.append(logits)
    assert past[0][0].shape == (3, 2, model.seq_len, 16)  # (B, nh, T, hs)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("build", [tiny_gpt, tiny_xl], ids=["gpt", "transformer-xl"])
def test_cached_sampling_equals_uncached_sampling(build) -> None:
    model = build(top_k=10, temperature=0.9)
    a, la = model.generate_tokens(4, torch.Generator().manual_seed(3), use_cache=True, return_logits=True)
    b, lb = model.generate_tokens(4, torch.Generator().manual_seed(3), use_cache=False, return_logits=True)
    assert torch.equal(a, b)
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    # the logits each token was drawn from are the teacher-forced logits of the drawn sequence
    torch.testing.assert_close(la, model.image_logits(a), atol=1e-5, rtol=1e-5)
    c = model.generate_tokens(4, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("segment_len,mem_len", [(5, 0), (5, 3), (5, 12), (1, 4), (16, 6)])
def test_xl_cached_sampling_equals_uncached_for_any_segment_and_memory(segment_len: int, mem_len: int) -> None:
    """The sampling cache (memory + the segment's layer inputs) reproduces the teacher-forced segments exactly,
    with no memory, a memory shorter or longer than a segment, one-token segments and a single segment."""
    model = tiny_xl(segment_len=segment_len, mem_len=mem_len)
    a, la = model.generate_tokens(3, torch.Generator().manual_seed(0), use_cache=True, return_logits=True)
    b, lb = model.generate_tokens(3, torch.Generator().manual_seed(0), use_cache=False, return_logits=True)
    assert torch.equal(a, b)
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("build", [tiny_gpt, tiny_xl], ids=["gpt", "transformer-xl"])
def test_model_is_causal(build) -> None:
    model = build()
    tokens = random_tokens(model, b=1)
    base = model.image_logits(tokens)
    for t in (0, 4, 5, 11):  # includes the Transformer-XL segment boundaries (segment_len 5)
        changed = tokens.clone()
        changed[0, t] = (changed[0, t] + 1) % model.vocab
        out = model.image_logits(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)  # predicts tokens <= t
        assert not torch.allclose(out[:, t + 1], base[:, t + 1], atol=1e-4)  # the next one sees token t


def test_top_k_one_is_greedy_decoding() -> None:
    greedy = tiny_gpt(temperature=0.0).generate_tokens(3, torch.Generator().manual_seed(0))
    top1 = tiny_gpt(top_k=1).generate_tokens(3, torch.Generator().manual_seed(1))
    assert torch.equal(greedy, top1)


# ---------------------------------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("build", [tiny_gpt, tiny_xl], ids=["gpt", "transformer-xl"])
def test_nll_is_the_hand_summed_cross_entropy_of_the_quantized_image(build) -> None:
    model = build()
    x = torch.rand(3, *SMALL_IMAGE, generator=torch.Generator().manual_seed(0))
    tokens = F.adaptive_avg_pool2d(x, 4).mul(16).floor().clamp(0, 15).long().flatten(1)  # by hand
    log_probs = torch.log_softmax(model.image_logits(tokens), dim=-1)  # (B, N, V)
    by_hand = torch.stack([-sum(log_probs[b, t, tokens[b, t]] for t in range(16)) for b in range(3)])
    torch.testing.assert_close(model.nll(x), by_hand, atol=1e-4, rtol=1e-5)
    assert model.likelihood == "categorical-16levels-4x4(quantized intensities)"
    assert model.nll_bound == "exact" and model.likelihood_dims() == 16


@pytest.mark.parametrize("name", ["gpt", "transformer-xl", "text2image-gpt"])
def test_probabilities_of_all_sequences_sum_to_one(name: str) -> None:
    """With 2 levels on a 2×2 grid there are 16 sequences: an exact likelihood must normalize over them."""
    build = {"gpt": tiny_gpt, "transformer-xl": tiny_xl, "text2image-gpt": tiny_t2i}[name]
    extra = {"segment_len": 3, "mem_len": 2} if name == "transformer-xl" else {}
    model = build(levels=2, token_size=2, **extra)
    every = torch.tensor(list(itertools.product([0, 1], repeat=4)))  # (16, 4)
    with torch.no_grad():
        total = torch.exp(-model.token_nll(every).double()).sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_a_few_dozen_steps_on_a_constant_image_lower_its_nll() -> None:
    model = tiny_gpt(lr=1e-2)
    x = torch.full((8, *SMALL_IMAGE), 0.7)
    before = model.nll(x).mean()
    model.train()
    opt = model.configure_optimizers()
    for _ in range(30):
        opt.zero_grad()
        model.training_loss({"image": x}, "train")["loss"].backward()
        opt.step()
    after = model.eval().nll(x).mean()
    assert before > 16 * math.log(16) * 0.8  # ≈ uniform at init
    assert after < 0.25 * before, f"NLL {before:.2f} -> {after:.2f} nats"


def test_warmup_and_cosine_schedule() -> None:
    model = tiny_gpt(lr=1e-3, warmup_steps=4, cosine_decay=True)
    fake = SimpleNamespace(estimated_stepping_batches=20)
    with mock.patch.object(GPT, "trainer", new_callable=mock.PropertyMock, return_value=fake):
        config = model.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[3] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # decays monotonically after warmup
    assert lrs[-1] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))


# ------------------------------------------------------------------------------------------------ Transformer-XL
def test_rel_shift_aligns_scores_with_distances() -> None:
    b, h, t, m = 2, 3, 4, 5
    k = m + t
    x = torch.randn(b, h, t, k)  # column c holds the score of distance k - 1 - c
    shifted = rel_shift(x)
    for i in range(t):
        for j in range(m + i + 1):  # unmasked keys
            distance = m + i - j
            assert torch.equal(shifted[:, :, i, j], x[:, :, i, k - 1 - distance])


def test_xl_memory_changes_later_segment_logits_and_gets_no_gradient() -> None:
    model = tiny_xl(segment_len=5, mem_len=5)
    tokens = random_tokens(model, b=2)
    idx = model.build_inputs(tokens)
    seg1, seg2 = idx[:, :5], idx[:, 5:10]
    _, mems = model(seg1, model.init_memory(2))
    assert all(m.shape == (2, 5, 32) and not m.requires_grad for m in mems)

    with_mem, _ = model(seg2, mems)
    without_mem, _ = model(seg2, model.init_memory(2))
    other = seg1.clone()
    other[:, 1:] = (other[:, 1:] + 3) % model.vocab
    _, other_mems = model(other, model.init_memory(2))
    with_other_mem, _ = model(seg2, other_mems)
    assert not torch.allclose(with_mem, without_mem, atol=1e-4)
    assert not torch.allclose(with_mem, with_other_mem, atol=1e-4)
    torch.testing.assert_close(with_mem, model.image_logits(tokens)[:, 5:10], atol=1e-5, rtol=1e-5)

    # BOS appears only in segment 1: a loss on segment 2 reaches it only through the (detached) memory
    model.train()
    model.zero_grad()
    _, mems = model(seg1, model.init_memory(2))
    logits, _ = model(seg2, mems)
    logits.logsumexp(-1).sum().backward()
    emb_grad = model.tok_emb.weight.grad
    assert torch.count_nonzero(emb_grad[model.bos]) == 0
    assert emb_grad[seg2.unique()].abs().sum() > 0


def test_xl_without_memory_forgets_earlier_segments() -> None:
    model = tiny_xl(segment_len=5, mem_len=0)
    tokens = random_tokens(model, b=1)
    changed = tokens.clone()
    changed[0, :4] = (changed[0, :4] + 1) % model.vocab  # inputs 1..4 of segment 1 only
    torch.testing.assert_close(model.image_logits(changed)[:, 5:], model.image_logits(tokens)[:, 5:])


def test_gpt_and_transformer_xl_at_equal_parameters() -> None:
    xl_hparams = TransformerXL.gpt_matched_hparams()
    gpt_count = GPT().num_parameters()
    xl_count = TransformerXL(**xl_hparams).num_parameters()
    assert abs(xl_count - gpt_count) / gpt_count < 0.05
    assert xl_hparams["n_embd"] == TransformerXL().hparams.n_embd  # the documented default is the matched width
    assert (gpt_count, xl_count) == (822_656, 811_332)  # the counts stated in the docstrings
    print(f"\ngpt {gpt_count:,} vs transformer-xl {xl_count:,} parameters")


def test_xl_matched_to_a_gpt_over_784_pixel_tokens_is_wider() -> None:
    """One token per pixel: GPT's 784 × 64 position table is a third of its parameters, so the XL match is wider."""
    gpt_hparams = {"n_layer": 2, "n_head": 4, "n_embd": 64, "token_size": 28}
    xl_hparams = TransformerXL.gpt_matched_hparams((1, 28, 28), **gpt_hparams)
    gpt_count = GPT(image_shape=(1, 28, 28), **gpt_hparams).num_parameters()
    xl_count = TransformerXL(**xl_hparams).num_parameters()
    assert xl_hparams["n_embd"] > 64 and xl_hparams["token_size"] == 28
    assert abs(xl_count - gpt_count) / gpt_count < 0.05


# ----------------------------------------------------------------------------------------------- text-to-image
def test_guidance_scale_one_is_conditional_sampling() -> None:
    model = tiny_t2i(guidance_scale=1.0)
    text = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    cond = model.generate_tokens(2, torch.Generator().manual_seed(0), prefix=text)
    images = model.sample_from_text(text, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, model.tokenizer.decode(cond))
    torch.testing.assert_close(model.guided_logits(cond, text, 1.0), model.image_logits(cond, text),
                               atol=1e-5, rtol=1e-5)


def test_guided_sampling_follows_the_cfg_formula() -> None:
    model = tiny_t2i()
    text = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    null = model.null_text(2)
    tokens, logits = model.generate_tokens(2, torch.Generator().manual_seed(0), prefix=text, null_prefix=null,
                                           guidance_scale=3.0, return_logits=True)
    cond, uncond = model.image_logits(tokens, text), model.image_logits(tokens, null)
    torch.testing.assert_close(logits, uncond + 3.0 * (cond - uncond), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits, cond, atol=1e-3)  # guidance changes the distribution
    uncached, _ = model.generate_tokens(2, torch.Generator().manual_seed(0), prefix=text, null_prefix=null,
                                        guidance_scale=3.0, return_logits=True, use_cache=False)
    assert torch.equal(tokens, uncached)


def test_text2image_loss_is_on_image_tokens_and_drops_captions() -> None:
    model = tiny_t2i(p_uncond=0.0)
    x = torch.rand(4, *SMALL_IMAGE, generator=torch.Generator().manual_seed(0))
    text = torch.tensor([[3, 4, 0], [5, 0, 0], [6, 7, 8], [9, 0, 0]])  # shorter than text_length: padded
    loss = model.training_loss({"image": x, "text": text}, "train")["loss"]
    tokens = model.tokenizer.encode(x)
    expected = F.cross_entropy(model.image_logits(tokens, model.fit_text(text)).flatten(0, 1), tokens.flatten())
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(model.nll(x), model.token_nll_given(tokens, torch.zeros(4, 5, dtype=torch.long)))

    model.hparams.p_uncond = 1.0
    assert torch.equal(model.drop_captions(model.fit_text(text)), torch.zeros(4, 5, dtype=torch.long))
    null_loss = model.training_loss({"image": x, "text": text}, "train")["loss"]
    val_loss = model.training_loss({"image": x, "text": text}, "val")["loss"]  # validation keeps captions
    torch.testing.assert_close(val_loss, expected)
    assert not torch.allclose(null_loss, expected)
    assert model.required_modalities() == ("image", "text")


def test_text2image_needs_captioned_data() -> None:
    with pytest.raises(ValueError, match="captioned"):
        Text2ImageGPT(image_shape=SMALL_IMAGE, vocab_size=0, text_length=0)
