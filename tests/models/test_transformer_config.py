"""The transformer generators' configs (models/transformer/config.py): the same arguments, hyperparameters,
checkpoints and architectures as the explicit constructors they replace, and one place for defaults and checks.

The literals below were recorded with the code before the configs (commit 0779b24): the hyperparameters every
model saved, and the parameter counts of the suite entries. A checkpoint of that code holds exactly those
hyperparameters (``hparams_name`` "kwargs"), so loading one rebuilt from them is loading an old checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from bench.spec import load_suite_file, model_entry
from datamodules import DATAMODULES
from models import MODELS
from models.hparams import check_hparam_types, parameter_count
from models.transformer.config import (
    ImageTokensConfig, MaskGITConfig, Text2ImageConfig, TransformerConfig, TransformerXLConfig,
)
from models.transformer.tokenizers import TOKENIZERS, PixelTokenizer, build_tokenizer
from tests.models.tester import assert_state_dicts_equal, quiet_trainer

SUITES = Path(__file__).resolve().parents[2] / "bench" / "suites"

#: Tiny arguments per model (8×8 images, 4×4 token grids).
TINY: dict[str, dict[str, Any]] = {
    "gpt": {"image_shape": (1, 8, 8), "n_layer": 1, "n_head": 2, "n_embd": 16, "token_size": 4},
    "transformer-xl": {"image_shape": (1, 8, 8), "n_layer": 1, "n_head": 2, "n_embd": 16, "token_size": 4,
                       "segment_len": 5, "mem_len": 6},
    "text2image-gpt": {"image_shape": (1, 8, 8), "vocab_size": 12, "text_length": 5, "n_layer": 1, "n_head": 2,
                       "n_embd": 16, "token_size": 4, "text_loss_weight": 0.1},
    "maskgit": {"image_shape": (1, 8, 8), "depth": 1, "heads": 2, "dim": 16, "token_size": 4},
}
_GPT_REST = {"dropout": 0.0, "tokenizer": "pixel", "levels": 16, "tokenizer_weights": None, "temperature": 1.0,
             "top_k": 0, "lr": 0.001, "weight_decay": 0.01, "warmup_steps": 0, "cosine_decay": False}
#: ``dict(model.hparams)`` of ``MODELS.get(name)(**TINY[name])`` before the configs.
OLD_HPARAMS: dict[str, dict[str, Any]] = {
    "gpt": {**TINY["gpt"], **_GPT_REST},
    "transformer-xl": {**TINY["transformer-xl"], **_GPT_REST},
    "text2image-gpt": {**TINY["text2image-gpt"], **_GPT_REST, "p_uncond": 0.1, "guidance_scale": 1.0},
    "maskgit": {**TINY["maskgit"], "tokenizer": "pixel", "levels": 16, "tokenizer_weights": None, "mlp_ratio": 4.0,
                "dropout": 0.0, "num_steps": 8, "choice_temperature": 4.5, "sample_temperature": 1.0, "lr": 0.001,
                "weight_decay": 0.01},
}
#: ``num_parameters()`` of the tiny models before the configs (gpt by hand: 17·16 embeddings + 16·16 positions +
#: one block 12·16² + 13·16 = 3280 + final LayerNorm 32 + head 16·16 = 4096).
OLD_TINY_COUNTS = {"gpt": 4096, "transformer-xl": 4128, "text2image-gpt": 4560, "maskgit": 4112}
#: Parameters of every transformer entry of the suite files (pixel tokenizer) before the configs.
OLD_SUITE_COUNTS = {
    ("generative", "gpt", "fashion-mnist"): 114752,
    ("generative", "maskgit", "fashion-mnist"): 114768,
    ("generative", "transformer-xl", "fashion-mnist"): 110656,
    ("long-context", "gpt", "fashion-mnist"): 152384,
    ("long-context", "transformer-xl", "fashion-mnist"): 155116,
    ("text2image", "text2image-gpt", "captioned-fashion-mnist"): 116992,
    ("text2image", "text2image-gpt-cfg3", "captioned-fashion-mnist"): 116992,
}
CONFIGS = {"gpt": TransformerConfig, "transformer-xl": TransformerXLConfig, "text2image-gpt": Text2ImageConfig,
           "maskgit": MaskGITConfig}


def build(name: str, seed: int = 0, **changes: Any) -> pl.LightningModule:
    torch.manual_seed(seed)
    return MODELS.get(name)(**{**TINY[name], **changes})


def plain(hparams: Any) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(hparams).items()}


def save_checkpoint(model: pl.LightningModule, path: Path) -> None:
    """A Lightning checkpoint of ``model`` as ``Trainer.fit`` writes it (state dict, hparams, loops...)."""
    trainer = quiet_trainer(path.parent)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)


def samples(model: Any) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.sample(2, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------------------ hparams & checkpoints
@pytest.mark.parametrize("name", list(TINY))
def test_hparams_and_architecture_are_those_of_the_explicit_constructors(name: str) -> None:
    model = build(name)
    assert plain(model.hparams) == OLD_HPARAMS[name]  # same keys, same values (defaults included)
    assert model.num_parameters() == OLD_TINY_COUNTS[name]
    assert isinstance(model.config, CONFIGS[name]) and model.config.as_dict() == OLD_HPARAMS[name]


@pytest.mark.parametrize("name", list(TINY))
def test_lightning_checkpoint_loads_with_load_from_checkpoint(name: str, tmp_path: Path) -> None:
    model = build(name, seed=1)
    path = tmp_path / "model.ckpt"
    save_checkpoint(model, path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert plain(payload["hyper_parameters"]) == OLD_HPARAMS[name] and payload["hparams_name"] == "kwargs"

    loaded = type(model).load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert plain(loaded.hparams) == plain(model.hparams) and loaded.config == model.config
    assert_state_dicts_equal(model.state_dict(), loaded.state_dict())
    assert torch.equal(samples(model), samples(loaded))


@pytest.mark.parametrize("name", list(TINY))
def test_checkpoint_with_the_old_hyperparameters_loads(name: str, tmp_path: Path) -> None:
    """A checkpoint as the explicit constructors saved it: their hparams (non-default values too), strict load."""
    changes = {"lr": 0.005, "dropout": 0.1}
    model = build(name, seed=2, **changes)
    path = tmp_path / "model.ckpt"
    save_checkpoint(model, path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["hyper_parameters"], payload["hparams_name"] = {**OLD_HPARAMS[name], **changes}, "kwargs"
    torch.save(payload, path)
    loaded = MODELS.get(name).load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert plain(loaded.hparams) == {**OLD_HPARAMS[name], **changes}
    assert loaded.config.dropout == 0.1
    assert_state_dicts_equal(model.state_dict(), loaded.state_dict())


# ------------------------------------------------------------------------------------------- one source of truth
@pytest.mark.parametrize("name", list(TINY))
def test_every_argument_is_a_config_field_with_the_same_default(name: str) -> None:
    """``<Config>.pick(locals())`` drops nothing: the signature and the config name the same fields, same defaults."""
    params = {k: p for k, p in inspect.signature(MODELS.get(name).__init__).parameters.items() if k != "self"}
    config_fields = {f.name: f.default for f in dataclasses.fields(CONFIGS[name])}
    assert set(params) == set(config_fields)
    assert {k: p.default for k, p in params.items()} == config_fields


def test_configs_share_fields_by_inheritance() -> None:
    tokens = {f.name for f in dataclasses.fields(ImageTokensConfig)}
    gpt = {f.name for f in dataclasses.fields(TransformerConfig)}
    assert tokens == {"image_shape", "tokenizer", "levels", "token_size", "tokenizer_weights"}
    for cls in (TransformerConfig, MaskGITConfig):
        assert tokens < {f.name for f in dataclasses.fields(cls)}
    for cls in (TransformerXLConfig, Text2ImageConfig):
        assert gpt < {f.name for f in dataclasses.fields(cls)}
    assert TransformerXLConfig().n_embd == 124 and TransformerConfig().n_embd == 128  # the matched XL width


def test_config_is_frozen_and_normalizes_the_image_shape() -> None:
    config = TransformerConfig(image_shape=[1, 16, 16])  # a list, as from a YAML file
    assert config.image_shape == (1, 16, 16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_layer = 8  # type: ignore[misc]
    assert TransformerConfig.pick({"n_layer": 2, "self": None, "other": 1}) == TransformerConfig(n_layer=2)


@pytest.mark.parametrize(("name", "changes", "message"), [
    ("gpt", {"n_embd": 30, "n_head": 4}, "divisible"),
    ("transformer-xl", {"segment_len": 0}, "segment_len >= 1"),
    ("transformer-xl", {"mem_len": -1}, "mem_len >= 0"),
    ("text2image-gpt", {"vocab_size": 0}, "captioned data"),
    ("text2image-gpt", {"p_uncond": 1.5}, r"p_uncond must be in \[0, 1\]"),
    ("maskgit", {"num_steps": 0}, "num_steps must be >= 1"),
])
def test_invalid_arguments_are_refused_before_anything_is_built(name: str, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(name, **changes)


def test_runtime_settings_stay_changeable_on_a_built_model() -> None:
    """Sampling knobs are read from ``hparams`` when used (benchmarks/maskgit_decoding_steps.py sets them)."""
    model = build("gpt").eval()
    model.hparams.temperature = 0.0  # greedy
    with torch.no_grad():
        assert torch.equal(model.generate_tokens(2, generator=torch.Generator().manual_seed(0)),
                           model.generate_tokens(2, generator=torch.Generator().manual_seed(1)))


# ----------------------------------------------------------------------------------------------------- tokenizers
def test_tokenizers_are_registered_and_built_by_name() -> None:
    assert TOKENIZERS.names() == ["pixel", "vq"]
    tok = build_tokenizer((1, 8, 8), kind="pixel", levels=4, size=16)  # capped at the image side
    assert isinstance(tok, PixelTokenizer) and tok.grid == (8, 8) and tok.vocab_size == 4
    assert build_tokenizer((1, 8, 8), kind="pixel", size=4).seq_len == 16
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'; valid tokenizers: pixel, vq"):
        build_tokenizer((1, 8, 8), kind="bpe")
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        build("gpt", tokenizer="bpe")
    with pytest.raises(ValueError, match="needs tokenizer weights"):
        build_tokenizer((1, 8, 8), kind="vq")


# ---------------------------------------------------------------------------------------------------- suite files
def _transformer_entries() -> list[tuple[str, str, str, str, dict[str, Any], dict[str, Any]]]:
    entries = []
    for path in sorted(SUITES.glob("*.yaml")):
        suite = load_suite_file(path)
        for track in suite.tracks:
            for label, args in track.models.items():
                name, hparams = model_entry(label, args)
                if name in CONFIGS:
                    for dm_name, dm_args in track.datamodules.items():
                        entries.append((suite.name, label, name, dm_name, dm_args, hparams))
    return entries


def test_suite_files_build_the_same_transformers() -> None:
    """Every transformer entry of bench/suites/*.yaml passes the type check and builds (on the meta device) with
    the parameter count it had; VQ-tokenized entries need a trained VQ-VAE and are checked up to the build."""
    built = {}
    for suite, label, name, dm_name, dm_args, hparams in _transformer_entries():
        cls = MODELS.get(name)
        check_hparam_types(cls, hparams)
        if hparams.get("tokenizer") == "vq":
            continue
        spec = DATAMODULES.get(dm_name)(**dm_args).data_spec()
        built[(suite, label, dm_name)] = parameter_count(lambda: cls.from_data(spec, **hparams))  # noqa: B023
    assert built == OLD_SUITE_COUNTS
