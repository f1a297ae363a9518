"""Every registered model, including ones added later, builds from data and survives a ``fast_dev_run`` fit.

The datamodule follows from the model's family base class (never its name): classifiers read image+text batches
(``captioned-digits``), image generators the 16×16 digits. Default hyperparameters: a model must work without any.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules import DATAMODULES, BenchDataModule
from models import MODELS, BenchModule, Classifier, ImageGenerator, TextToImageGenerator
from tests.models.tester import quiet_trainer


def datamodule_for(cls: type[BenchModule]) -> BenchDataModule:
    if issubclass(cls, (Classifier, TextToImageGenerator)):  # captioned data: both modalities
        return DATAMODULES.get("captioned-digits")(batch_size=16)
    return DATAMODULES.get("digits")(image_size=16, batch_size=16)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_fast_dev_run(name: str, tmp_path: Path) -> None:
    cls = MODELS.get(name)
    assert issubclass(cls, (ImageGenerator, Classifier)), f"{name} declares no capability base class"
    assert cls.family, f"{name} has no family"
    dm = datamodule_for(cls)
    torch.manual_seed(0)
    model = cls.from_data(dm.data_spec())
    trainer = quiet_trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished
    assert not model.diverged


def test_the_expected_models_are_registered() -> None:
    assert {"dcgan", "vae", "early-concat", "late-average", "unimodal-image", "unimodal-text"} <= set(MODELS.names())
