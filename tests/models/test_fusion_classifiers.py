"""Fusion classifiers: the shared model checks for the unimodal baselines, their pieces, and modality facts of
the baselines and of ``early-concat`` / ``late-average`` (the classic early and late fusion; the shared checks of
every operator classifier are in test_operator_classifiers.py)."""

from __future__ import annotations

import pytest
import torch

from datamodules import DATAMODULES
from models import MODELS
from models.fusion.components import EarlyConcatFusion, ImageTokens, TextTokens, TokenEncoder
from tests.models.tester import ModelTesterMixin

TINY = {"d_model": 16, "n_layers": 1}


class _FusionTester(ModelTesterMixin):
    datamodule_name = "captioned-digits"
    datamodule_args = {}
    hparams = TINY
    batch_size = 16


class TestUnimodalImage(_FusionTester):
    model_name = "unimodal-image"


class TestUnimodalText(_FusionTester):
    model_name = "unimodal-text"


# ------------------------------------------------------------------------------------------------ fusion operators
def test_early_concat_fusion_concatenates_token_sequences() -> None:
    fusion = EarlyConcatFusion(num_modalities=2, d_model=8)
    a, b = torch.randn(3, 5, 8), torch.randn(3, 7, 8)
    out = fusion([a, b])
    assert out.shape == (3, 12, 8)
    # each modality keeps its own tokens, shifted by its own learned embedding
    assert torch.allclose(out[:, :5] - a, fusion.modality[0].expand(3, 5, 8))
    assert torch.allclose(out[:, 5:] - b, fusion.modality[1].expand(3, 7, 8))


def test_early_concat_fusion_single_modality() -> None:
    fusion = EarlyConcatFusion(num_modalities=1, d_model=4)
    assert fusion([torch.randn(2, 3, 4)]).shape == (2, 3, 4)


def test_tokenizers_and_encoder_shapes() -> None:
    image_tokens = ImageTokens((1, 8, 8), patch_size=2, d_model=16)
    assert image_tokens(torch.rand(3, 1, 8, 8)).shape == (3, 16, 16)
    text_tokens = TextTokens(vocab_size=25, text_length=10, d_model=16)
    assert text_tokens(torch.randint(25, (3, 10))).shape == (3, 10, 16)
    encoder = TokenEncoder(d_model=16, n_layers=1, n_heads=4, dropout=0.0)
    assert encoder(torch.randn(3, 26, 16)).shape == (3, 16)


def test_image_tokens_reject_patch_size_not_dividing_image() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        ImageTokens((1, 8, 8), patch_size=3, d_model=16)


# --------------------------------------------------------------------------------------- which modalities count
@pytest.fixture(scope="module")
def captioned() -> tuple[dict, dict]:
    dm = DATAMODULES.get("captioned-digits")()
    tensors = dm.split_tensors("test")
    batch = {k: v[:16] for k, v in tensors.items()}
    return dm.data_spec(), batch


def _logits(name: str, spec, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    torch.manual_seed(0)
    model = MODELS.get(name).from_data(spec, **TINY).eval()
    with torch.no_grad():
        return model.predict_logits(batch)


def _with(batch: dict[str, torch.Tensor], **changes: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**batch, **changes}


def test_unimodal_text_ignores_the_image(captioned) -> None:
    spec, batch = captioned
    base = _logits("unimodal-text", spec, batch)
    other = _logits("unimodal-text", spec, _with(batch, image=torch.rand_like(batch["image"])))
    assert torch.equal(base, other)
    assert MODELS.get("unimodal-text").modalities == ("text",)


def test_unimodal_image_ignores_the_text(captioned) -> None:
    spec, batch = captioned
    base = _logits("unimodal-image", spec, batch)
    other = _logits("unimodal-image", spec, _with(batch, text=torch.randint(spec.vocab_size, batch["text"].shape)))
    assert torch.equal(base, other)
    assert MODELS.get("unimodal-image").modalities == ("image",)


def test_unimodal_models_do_not_need_the_other_modality(captioned) -> None:
    spec, batch = captioned
    assert _logits("unimodal-text", spec, {"text": batch["text"]}).shape == (16, spec.num_classes)
    assert _logits("unimodal-image", spec, {"image": batch["image"]}).shape == (16, spec.num_classes)


@pytest.mark.parametrize("name", ["early-concat", "late-average"])
def test_fusion_models_read_both_modalities(name: str, captioned) -> None:
    spec, batch = captioned
    base = _logits(name, spec, batch)
    new_image = _logits(name, spec, _with(batch, image=torch.rand_like(batch["image"])))
    new_text = _logits(name, spec, _with(batch, text=torch.randint(spec.vocab_size, batch["text"].shape)))
    assert not torch.allclose(base, new_image), f"{name} ignores the image"
    assert not torch.allclose(base, new_text), f"{name} ignores the text"


def test_late_average_predicts_normalized_log_probabilities(captioned) -> None:
    spec, batch = captioned
    logits = _logits("late-average", spec, batch)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(len(logits)), atol=1e-5)


def test_fusion_stages_are_declared() -> None:
    names = ("early-concat", "late-average", "unimodal-image", "unimodal-text")
    stages = {name: MODELS.get(name).fusion_stage for name in names}
    assert stages == {"early-concat": "early", "late-average": "late", "unimodal-image": "unimodal",
                      "unimodal-text": "unimodal"}
    assert "early-fusion" not in MODELS and "late-fusion" not in MODELS  # the legacy names of these two
