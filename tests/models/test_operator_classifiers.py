"""One classifier per fusion operator (registered under the operator's name): the shared model checks for each,
plus what fusion promises — both modalities reach the prediction, the stage is the operator's, alignment is mid-only.
"""

from __future__ import annotations

import pytest
import torch

from datamodules import DATAMODULES
from models import MODELS
from models.fusion.operators import FUSIONS
from tests.models.tester import ModelTesterMixin

TINY = {"d_model": 16, "n_layers": 1}


class _OperatorTester(ModelTesterMixin):
    datamodule_name = "captioned-digits"
    datamodule_args = {}
    hparams = TINY
    batch_size = 16


for _name in FUSIONS.names():  # TestMidGated, TestLateStacking, ...: one shared-tester class per operator
    _cls_name = "Test" + "".join(part.capitalize() for part in _name.split("-"))
    globals()[_cls_name] = type(_cls_name, (_OperatorTester,), {"model_name": _name})


class TestMidGatedAligned(_OperatorTester):
    """The modality-invariance variant: a mid-fusion model with the contrastive alignment loss switched on."""

    model_name = "mid-gated"
    hparams = {**TINY, "align_weight": 0.5}


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    dm = DATAMODULES.get("captioned-digits")(batch_size=32)
    dm.setup()
    return next(iter(dm.dataloader("test", batch_size=32)))


@pytest.mark.parametrize("name", FUSIONS.names())
def test_model_declares_its_operator_and_stage(name: str) -> None:
    cls = MODELS.get(name)
    assert cls.fusion_operator == name and cls.fusion_stage == FUSIONS.get(name).stage
    assert cls.family == "fusion" and set(cls().required_modalities()) == {"image", "text"}


@pytest.mark.parametrize("name", FUSIONS.names())
def test_both_modalities_reach_the_prediction(name: str, batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = MODELS.get(name)(image_shape=(1, 8, 8), vocab_size=batch["text"].max().item() + 1,
                             text_length=batch["text"].shape[1], **TINY).eval()
    with torch.no_grad():
        base = model.predict_logits(batch)
        other_image = model.predict_logits({**batch, "image": batch["image"].flip(0)})
        other_text = model.predict_logits({**batch, "text": batch["text"].flip(0)})
    assert not torch.allclose(base, other_image), "the image does not change the prediction"
    assert not torch.allclose(base, other_text), "the text does not change the prediction"


def test_operator_models_match_the_original_early_and_late_fusion_sizes() -> None:
    """early-concat and late-average are the early-fusion and late-fusion architectures, parameter for parameter."""
    count = lambda name: MODELS.get(name)(**TINY).num_parameters()  # noqa: E731
    assert count("early-concat") == count("early-fusion")
    assert count("late-average") == count("late-fusion")


def test_alignment_is_mid_fusion_only() -> None:
    aligned = MODELS.get("mid-sum")(**TINY, align_weight=0.5)
    assert aligned.alignment is not None and MODELS.get("mid-sum")(**TINY).alignment is None
    for name in ("early-concat", "late-weighted"):
        with pytest.raises(ValueError, match="mid fusion only"):
            MODELS.get(name)(**TINY, align_weight=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        MODELS.get("mid-sum")(**TINY, align_weight=-1.0)


def test_alignment_adds_its_weighted_loss(batch: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    plain = MODELS.get("mid-concat")(**TINY, dropout=0.0)
    torch.manual_seed(0)
    aligned = MODELS.get("mid-concat")(**TINY, dropout=0.0, align_weight=2.0)
    aligned.load_state_dict(plain.state_dict(), strict=False)  # same encoders and head; only the projections differ
    task, _ = plain.loss(batch)
    total, _ = aligned.loss(batch)
    _, _, pooled = aligned.outputs(batch)
    assert total.item() == pytest.approx(task.item() + 2.0 * aligned.alignment(pooled).item(), rel=1e-5)
