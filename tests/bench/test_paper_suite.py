"""The `generative-paper` suite (papers' budgets, Inception protocol on CIFAR-10), smoke-tested on fixtures.

CIFAR-10 and the Inception weights cannot be downloaded here, so the suite is not run; these tests check that it
states the paper protocol, that every model configuration in it builds and trains a step on CIFAR-shaped data, and
that the whole suite passes the runner's up-front validation (data, models, metrics, the Inception backbone loaded
from a weights file) on a local CIFAR-10 copy in the hub's parquet layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.runner import prepare
from bench.suites import load_suite
from datamodules import DATAMODULES
from models import MODELS
from tests.datamodules.test_hf_images import write_hub_parquet
from tests.models.tester import quiet_trainer


@pytest.fixture(scope="module")
def suite():
    return load_suite("generative-paper")


@pytest.fixture
def cifar_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 40 + 10 image CIFAR-10 look-alike in the hub's parquet layout, found through $CIFAR10_DIR."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    rng = np.random.default_rng(0)
    arrays = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (("train", 40), ("test", 10))}
    root = tmp_path / "uoft-cs-cifar10"
    write_hub_parquet(root, "plain_text", "img", arrays)
    monkeypatch.setenv("CIFAR10_DIR", str(root))
    return root


def test_states_the_paper_protocol(suite) -> None:
    """TF-Inception, TF1 bilinear, 50k generated vs the training set, 10 IS splits, KID 100 × 1000."""
    (track,) = suite.tracks
    e = track.eval
    assert (e.backbone, e.resize, e.real_split, e.n_fake) == ("inception-v3-compat", "tf1-bilinear", "train", 50000)
    assert (e.is_splits, e.kid_subsets, e.kid_subset_size) == (10, 100, 1000)
    assert list(track.datamodules) == ["cifar10"]
    generative = load_suite("generative").tracks[0]
    assert set(track.models) == set(generative.models), "the paper preset covers every model of `generative`"


def test_every_model_configuration_trains_a_step(suite, cifar_fixture: Path, tmp_path: Path) -> None:
    (track,) = suite.tracks
    dm_args = {**track.datamodules["cifar10"], "batch_size": 4}  # the models' arguments are the suite's own
    dm = DATAMODULES.get("cifar10")(**dm_args)
    dm.setup()
    assert dm.data_spec().image_shape == (3, 32, 32)
    for name, args in track.models.items():
        model = MODELS.get(name).from_data(dm.data_spec(), **args)
        trainer = quiet_trainer(tmp_path, fast_dev_run=True, limit_val_batches=0)
        trainer.fit(model, datamodule=dm)
        assert trainer.state.finished and not model.diverged, name


def test_whole_suite_passes_validation_with_inception_weights(suite, cifar_fixture: Path,
                                                              inception_weights_file: Path) -> None:
    dms, backbones = prepare(suite, inception_weights_file)
    (backbone,) = backbones.values()
    assert backbone.registry_name == "inception-v3-compat" and backbone.resize == "tf1-bilinear-299"
    (dm,) = dms.values()
    assert len(dm.split_tensors("train")["label"]) == 40  # val_size 0: every training image is the reference
