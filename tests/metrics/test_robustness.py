"""bench.metrics.robustness: per-condition accuracy and relative robustness, and its evaluation on real models."""

import pytest
import torch

from bench.evaluate import Evaluator
from bench.metrics.robustness import NOISE_LEVELS, Robustness, conditions
from bench.spec import EvalSpec
from datamodules import DATAMODULES
from models import MODELS


def _logits(pred: list[int], k: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), k).float()


def test_accuracies_and_relative_robustness_by_hand():
    metric = Robustness(modalities=("image",), levels=(0.5, 1.0))
    target = torch.tensor([0, 1, 2, 0])
    metric.update("clean", _logits([0, 1, 2, 1]), target)  # 3/4
    metric.update("drop-image", _logits([1, 1, 1, 1]), target)  # 1/4
    metric.update("noise-image@0.5", _logits([0, 1, 0, 1]), target)  # 2/4
    metric.update("noise-image@1", _logits([0, 0, 0, 1]), target)  # 1/4
    out = {k: v.item() for k, v in metric.compute().items()}
    assert out["acc-drop-image"] == 0.25 and out["acc-noise-image@0.5"] == 0.5 and out["acc-noise-image@1"] == 0.25
    assert out["relative-robustness-image"] == pytest.approx(((0.5 / 0.75) + (0.25 / 0.75)) / 2)
    with pytest.raises(ValueError, match="unknown condition"):
        metric.update("noise-text@0.5", _logits([0]), torch.tensor([0]))


def test_conditions_cover_every_modality_and_level():
    names = [c[0] for c in conditions(("image", "text"))]
    assert names[0] == "clean" and len(names) == 1 + 2 * (1 + len(NOISE_LEVELS))
    assert {"drop-image", "drop-text", "noise-text@1"} <= set(names)


def test_evaluator_scores_every_condition_and_an_image_only_model_ignores_text():
    """A unimodal image model is exactly as accurate with the text dropped or scrambled as on the clean set, and
    falls to chance-like accuracy with its image dropped: the evaluation corrupts exactly the modality it names."""
    dm = DATAMODULES.get("captioned-digits")(batch_size=64)
    dm.setup()
    torch.manual_seed(0)
    model = MODELS.get("unimodal-image").from_data(dm.data_spec(), d_model=16, n_layers=1)
    evaluator = Evaluator(EvalSpec(batch_size=64), ("accuracy", "robustness"), backbone=None)
    scores = {s.metric: s.value for s in evaluator.evaluate(model, dm, seed=0)}
    expected = {f"acc-{c[0]}" for c in conditions(("image", "text"))[1:]} | {
        "relative-robustness-image", "relative-robustness-text", "accuracy"}
    assert set(scores) == expected
    clean = scores["accuracy"]
    assert scores["acc-drop-text"] == pytest.approx(clean) and scores["acc-noise-text@1"] == pytest.approx(clean)
    assert scores["relative-robustness-text"] == pytest.approx(1.0)
    assert scores["acc-drop-image"] != pytest.approx(clean)
