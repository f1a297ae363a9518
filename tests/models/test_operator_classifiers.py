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


def _count_by_hand(d: int, layers: int, classes: int, vocab: int, length: int, patches: int, patch_area: int,
                   stage: str) -> int:
    """Parameters of the classic early / late fusion classifier (patch and word tokens, pre-norm Transformer)."""
    image_tokens = (patch_area * d + d) + patches * d  # patch convolution (1 channel) + positions
    text_tokens = vocab * d + length * d  # embeddings + positions
    layer = (3 * d * d + 3 * d) + (d * d + d) + (d * 2 * d + 2 * d) + (2 * d * d + d) + 2 * 2 * d  # attn, MLP, 2 LN
    encoder = d + layers * layer + 2 * d  # [CLS] + layers + final LayerNorm
    head = d * classes + classes
    if stage == "early":  # one shared encoder and head, plus the (2, d) modality embeddings
        return image_tokens + text_tokens + encoder + head + 2 * d
    return image_tokens + text_tokens + 2 * (encoder + head)  # an encoder and a head per modality


def test_early_concat_and_late_average_are_the_classic_early_and_late_fusion_sizes() -> None:
    """The quick suite's configuration (captioned-digits, d_model 32, one layer): 10,826 and 19,732 parameters,
    the counts of the removed ``early-fusion`` / ``late-fusion`` models, which had these architectures."""
    spec = DATAMODULES.get("captioned-digits")().data_spec()
    shape = dict(vocab=spec.vocab_size, length=spec.text_length, classes=spec.num_classes, patches=4, patch_area=16)
    early = MODELS.get("early-concat").from_data(spec, n_layers=1).num_parameters()
    late = MODELS.get("late-average").from_data(spec, n_layers=1).num_parameters()
    assert (early, late) == (10_826, 19_732)
    assert early == _count_by_hand(32, 1, stage="early", **shape)
    assert late == _count_by_hand(32, 1, stage="late", **shape)
    tiny = dict(vocab=32, length=10, classes=10, patches=4, patch_area=16)  # the models' own defaults, d_model 16
    assert MODELS.get("early-concat")(**TINY).num_parameters() == _count_by_hand(16, 1, stage="early", **tiny)
    assert MODELS.get("late-average")(**TINY).num_parameters() == _count_by_hand(16, 1, stage="late", **tiny)


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
