"""Suite specifications: loading, validation errors that name the file and the key, command-line overrides."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.backbones import BACKBONES
from bench.metrics import METRICS
from bench.registry import UnknownNameError
from bench.spec import EvalSpec, SpecError, SuiteSpec, TrainerSpec, load_suite_file, parse_suite
from bench.suites import SUITES, SUITES_DIR, load_suite
from datamodules import DATAMODULES
from models import MODELS

VALID: dict[str, Any] = {
    "name": "tiny",
    "description": "a test suite",
    "seeds": [0, 1],
    "trainer": {"max_epochs": 2, "limit_train_batches": 3},
    "eval": {"n_fake": 64, "batch_size": 32},
    "tracks": [
        {
            "name": "generation",
            "primary_metric": "fid",
            "metrics": ["fid", "kid", "mse"],
            "datamodules": {"digits": {"image_size": 16}},
            "models": {"dcgan": {"latent_dim": 8}, "vae": {}},
            "trainer": {"max_epochs": 3},
        },
        {
            "name": "fusion",
            "primary_metric": "accuracy",
            "metrics": ["accuracy", "f1-macro"],
            "datamodules": ["captioned-digits"],
            "models": ["early-concat", "unimodal-text"],
        },
    ],
}


def write_suite(tmp_path: Path, data: Any, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def valid() -> dict[str, Any]:
    return copy.deepcopy(VALID)


def spec_error(tmp_path: Path, data: Any) -> str:
    """Loads ``data`` from a file, expecting a SpecError; returns its message after checking it names the file."""
    path = write_suite(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_suite_file(path)
    message = str(info.value)
    assert str(path) in message, f"the message does not name the file: {message}"
    assert "\n" not in message.strip(), "a spec error is one line"
    return message


# ---------------------------------------------------------------------------------------------------- loading
def test_shipped_quick_suite_loads_with_its_tracks() -> None:
    spec = load_suite_file(SUITES_DIR / "quick.yaml")
    assert spec.name == "quick"
    assert spec.seeds == (0, 1, 2)
    assert [t.name for t in spec.tracks] == ["generation", "fusion"]
    gen, fusion = spec.tracks
    assert gen.primary_metric == "fid" and gen.primary_metric in gen.metrics
    assert set(gen.models) == {"dcgan", "vae"}
    assert set(gen.datamodules) == {"digits"}
    assert gen.datamodules["digits"]["image_size"] == 16
    assert fusion.primary_metric == "accuracy"
    assert set(fusion.models) == {"early-concat", "late-average", "unimodal-image", "unimodal-text"}
    assert set(fusion.datamodules) == {"captioned-digits"}
    for track in spec.tracks:
        assert isinstance(track.trainer, TrainerSpec) and isinstance(track.eval, EvalSpec)
        assert track.eval.backbone in BACKBONES
        assert all(m in METRICS for m in track.metrics)
        assert all(m in MODELS for m in track.models)
        assert all(d in DATAMODULES for d in track.datamodules)
    assert spec.source.endswith("quick.yaml")


def test_every_shipped_suite_loads_by_name() -> None:
    assert "quick" in SUITES.names()
    for name in SUITES.names():
        spec = load_suite(name)
        assert isinstance(spec, SuiteSpec) and spec.tracks


def test_valid_suite_merges_suite_and_track_settings(tmp_path: Path) -> None:
    spec = load_suite_file(write_suite(tmp_path, valid()))
    gen, fusion = spec.tracks
    assert spec.seeds == (0, 1)
    # the track's trainer overrides the suite's, key by key; unset keys keep the dataclass defaults
    assert gen.trainer == TrainerSpec(max_epochs=3, limit_train_batches=3)
    assert fusion.trainer == TrainerSpec(max_epochs=2, limit_train_batches=3)
    assert gen.eval.n_fake == 64 and fusion.eval.batch_size == 32
    assert gen.eval.kid_subsets == EvalSpec().kid_subsets
    # a list of names is the same as a mapping to empty arguments
    assert fusion.models == {"early-concat": {}, "unimodal-text": {}}
    assert fusion.datamodules == {"captioned-digits": {}}
    assert gen.models == {"dcgan": {"latent_dim": 8}, "vae": {}}
    assert gen.metrics == ("fid", "kid", "mse")


def test_suite_path_is_accepted_by_load_suite(tmp_path: Path) -> None:
    path = write_suite(tmp_path, valid(), "mine.yaml")
    assert load_suite(str(path)).name == "tiny"


def test_to_dict_is_plain_yaml(tmp_path: Path) -> None:
    spec = load_suite_file(write_suite(tmp_path, valid()))
    data = yaml.safe_load(yaml.safe_dump(spec.to_dict()))
    assert data["name"] == "tiny"
    assert [t["name"] for t in data["tracks"]] == ["generation", "fusion"]


# ---------------------------------------------------------------------------------------------------- errors
def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    message = spec_error(tmp_path, "name: tiny\ntracks: [unclosed\n  - {a: b\n")
    assert "YAML" in message


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="nope.yaml"):
        load_suite_file(path)


@pytest.mark.parametrize("text", ["[1, 2, 3]\n", "just a string\n", ""])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    spec_error(tmp_path, text)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = valid()
    data["tracs"] = []
    message = spec_error(tmp_path, data)
    assert "tracs" in message
    assert "tracks" in message  # the valid keys are listed


@pytest.mark.parametrize("key", ["name", "seeds", "tracks"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    data = valid()
    del data[key]
    assert key in spec_error(tmp_path, data)


@pytest.mark.parametrize("seeds", [[], "0,1", [0, "one"], [True, 1], None])
def test_seeds_must_be_a_list_of_integers(tmp_path: Path, seeds: Any) -> None:
    data = valid()
    data["seeds"] = seeds
    assert "seeds" in spec_error(tmp_path, data)


def test_seeds_must_be_unique(tmp_path: Path) -> None:
    data = valid()
    data["seeds"] = [0, 1, 0]
    assert "seeds" in spec_error(tmp_path, data)


def test_unknown_track_key(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][1]["modles"] = ["vae"]
    message = spec_error(tmp_path, data)
    assert "tracks[1].modles" in message
    assert "models" in message


@pytest.mark.parametrize("key", ["name", "primary_metric", "metrics", "datamodules", "models"])
def test_missing_track_key(tmp_path: Path, key: str) -> None:
    data = valid()
    del data["tracks"][0][key]
    assert f"tracks[0].{key}" in spec_error(tmp_path, data)


def test_unknown_model_lists_valid_models(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][0]["models"]["stylegan9"] = {}
    message = spec_error(tmp_path, data)
    assert "tracks[0].models.stylegan9" in message
    for name in MODELS.names():
        assert name in message


def test_unknown_datamodule_lists_valid_datamodules(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][1]["datamodules"] = ["imagenet-21k"]
    message = spec_error(tmp_path, data)
    assert "tracks[1].datamodules.imagenet-21k" in message
    for name in DATAMODULES.names():
        assert name in message


def test_unknown_metric_lists_valid_metrics(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][0]["metrics"] = ["fid", "inception-score-9000"]
    message = spec_error(tmp_path, data)
    assert "tracks[0].metrics" in message
    assert "inception-score-9000" in message
    for name in METRICS.names():
        assert name in message


def test_unknown_backbone_lists_valid_backbones(tmp_path: Path) -> None:
    data = valid()
    data["eval"]["backbone"] = "inception-v9"
    message = spec_error(tmp_path, data)
    assert "eval.backbone" in message and "inception-v9" in message
    for name in BACKBONES.names():
        assert name in message


def test_primary_metric_must_be_among_metrics(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][0]["primary_metric"] = "accuracy"
    message = spec_error(tmp_path, data)
    assert "tracks[0].primary_metric" in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("trainer", "max_epochs", "ten"),
        ("trainer", "max_epochs", 1.5),
        ("trainer", "max_epochs", True),
        ("trainer", "limit_train_batches", "all"),
        ("eval", "n_fake", "many"),
        ("eval", "backbone", 3),
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, section: str, key: str, value: Any) -> None:
    data = valid()
    data[section][key] = value
    message = spec_error(tmp_path, data)
    assert f"{section}.{key}" in message
    assert repr(value) in message or str(value) in message


def test_wrong_type_in_a_track_section(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][0]["trainer"]["max_epochs"] = "ten"
    assert "tracks[0].trainer.max_epochs" in spec_error(tmp_path, data)


def test_unknown_trainer_key(tmp_path: Path) -> None:
    data = valid()
    data["trainer"]["max_epoch"] = 3
    message = spec_error(tmp_path, data)
    assert "trainer.max_epoch" in message and "max_epochs" in message


def test_floats_accept_integers(tmp_path: Path) -> None:
    data = valid()
    data["trainer"]["limit_val_batches"] = 1
    data["trainer"]["gradient_clip_val"] = None
    spec = load_suite_file(write_suite(tmp_path, data))
    assert spec.tracks[0].trainer.limit_val_batches == 1
    assert spec.tracks[0].trainer.gradient_clip_val is None


def test_real_split_must_be_a_split(tmp_path: Path) -> None:
    data = valid()
    data["eval"]["real_split"] = "holdout"
    assert "real_split" in spec_error(tmp_path, data)


def test_parse_suite_names_its_source() -> None:
    with pytest.raises(SpecError, match="<memory>"):
        parse_suite({"name": "x"}, "<memory>")


# -------------------------------------------------------------------------------------------------- overrides
@pytest.fixture
def suite(tmp_path: Path) -> SuiteSpec:
    return load_suite_file(write_suite(tmp_path, valid()))


def test_override_models_filters_and_drops_empty_tracks(suite: SuiteSpec) -> None:
    only_vae = suite.with_overrides(models=["vae"])
    assert [t.name for t in only_vae.tracks] == ["generation"]
    assert only_vae.tracks[0].models == {"vae": {}}
    both = suite.with_overrides(models=["dcgan", "unimodal-text"])
    assert [t.name for t in both.tracks] == ["generation", "fusion"]
    assert list(both.tracks[0].models) == ["dcgan"] and both.tracks[0].models["dcgan"] == {"latent_dim": 8}
    assert list(both.tracks[1].models) == ["unimodal-text"]
    # the original is untouched
    assert set(suite.tracks[0].models) == {"dcgan", "vae"} and len(suite.tracks) == 2


def test_override_unknown_model_lists_the_suites_models(suite: SuiteSpec) -> None:
    with pytest.raises(UnknownNameError) as info:
        suite.with_overrides(models=["vae", "late-average"])  # registered, but not in this suite
    message = str(info.value)
    assert "late-average" in message
    for name in ("dcgan", "vae", "early-concat", "unimodal-text"):
        assert name in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


def test_override_datamodule(suite: SuiteSpec) -> None:
    moved = suite.with_overrides(datamodule="digits")
    # a track that already used it keeps its arguments; others get the defaults
    assert moved.tracks[0].datamodules == {"digits": {"image_size": 16}}
    assert moved.tracks[1].datamodules == {"digits": {}}


def test_override_seeds_epochs_and_batches(suite: SuiteSpec) -> None:
    changed = suite.with_overrides(seeds=[7], max_epochs=9, limit_batches=0.25)
    assert changed.seeds == (7,)
    for track, before in zip(changed.tracks, suite.tracks):
        assert track.trainer.max_epochs == 9
        assert track.trainer.limit_train_batches == 0.25
        assert track.trainer.limit_val_batches == 0.25
        assert track.trainer.gradient_clip_val == before.trainer.gradient_clip_val
        assert track.models == before.models and track.metrics == before.metrics


def test_no_overrides_is_identity(suite: SuiteSpec) -> None:
    assert suite.with_overrides() == suite
    assert dataclasses.asdict(suite.with_overrides(seeds=None)) == dataclasses.asdict(suite)


# ------------------------------------------------------------------------------------------------ model labels
def test_model_entry_may_name_its_registered_model(tmp_path: Path) -> None:
    from bench.runner import _build_model
    from bench.spec import model_entry

    data = valid()
    data["tracks"][0]["models"] = {"vae": {}, "vae-wide": {"model": "vae", "latent_dim": 12}}
    spec = load_suite_file(write_suite(tmp_path, data))
    models = spec.tracks[0].models
    assert list(models) == ["vae", "vae-wide"]
    assert model_entry("vae-wide", models["vae-wide"]) == ("vae", {"latent_dim": 12})
    assert model_entry("vae", models["vae"]) == ("vae", {})
    dm = DATAMODULES.get("digits")(image_size=16)
    dm.setup()
    built = _build_model("vae-wide", models["vae-wide"], dm, "here")
    assert type(built) is MODELS.get("vae") and built.hparams["latent_dim"] == 12


@pytest.mark.parametrize("target", ["no-such-model", 3])
def test_model_label_must_name_a_registered_model(tmp_path: Path, target: Any) -> None:
    data = valid()
    data["tracks"][0]["models"] = {"my-vae": {"model": target}}
    message = spec_error(tmp_path, data)
    assert "tracks[0].models.my-vae.model" in message and "valid models" in message and "vae" in message


def test_an_unlabelled_unknown_model_is_still_refused(tmp_path: Path) -> None:
    data = valid()
    data["tracks"][0]["models"] = {"no-such-model": {}}
    message = spec_error(tmp_path, data)
    assert "tracks[0].models.no-such-model'" in message and "valid models" in message
