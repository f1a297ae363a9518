"""The corpus of hostile files (:mod:`tests.hostile_files`, plus hostile weights files) through the real
``bench eval`` in subprocesses, under the harness's invariant (:func:`tests.fuzz.harness.check`) and with each
case's known outcome: refused in one line with exit 2, or scored with finite values.

By default every refused case runs (each costs one CLI start, about 2 s: the refusal comes before the metric and
backbone imports), one accepted case (a full start costs about 15 s; every accepted case is also scored
in-process by tests/bench/test_hostile_images.py) and two weights files; ``--fuzz-long`` runs every case.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

from tests import hostile_files
from tests.fuzz.harness import LONG, Sandbox, check, report

ACCEPTED_BY_DEFAULT = {"png16_gray"}  # each costs a full start (~15 s); every case runs in-process elsewhere


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Sandbox:
    box = Sandbox(tmp_path_factory.mktemp("fuzz-files"))
    yield box
    report("files", box)


def _eval(sandbox: Sandbox, name: str, argv: list[str], expected: str) -> dict | None:
    before = sandbox.files()
    done = sandbox.run(["eval", *argv, "--cache-dir", str(sandbox.cache), "--json"])
    check(sandbox, name, done, None, before, expected=expected)
    if done.returncode == 0:
        result = json.loads(done.stdout)
        values = [v for k, v in result.items() if k not in ("protocol", "rows")]
        assert values and all(math.isfinite(v) for v in values), (name, result)
        return result
    return None


def test_hostile_image_corpus(sandbox: Sandbox) -> None:
    folder = sandbox.inputs / "images"
    folder.mkdir()
    reference, _ = hostile_files.good_npz(sandbox.inputs)
    cases = hostile_files.write_corpus(folder)
    ran = 0
    for name, path, expected in cases:
        if expected == "ok" and not LONG and name not in ACCEPTED_BY_DEFAULT:
            continue
        _eval(sandbox, name, ["--real", str(reference), "--fake", str(path)], expected)
        ran += 1
    assert sandbox.tally["error"] >= 25 and sandbox.tally["ok"] >= len(ACCEPTED_BY_DEFAULT)
    assert ran == sum(sandbox.tally.values())


def _weights_corpus(folder: Path) -> dict[str, Path]:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    state = EfficientNet.from_name("efficientnet-lite0").state_dict()
    files = {}

    def put(name: str, content: bytes) -> None:
        files[name] = folder / f"{name}.pth"
        files[name].write_bytes(content)

    put("random_bytes", bytes(range(256)) * 64)
    put("empty", b"")
    real = folder / "real.pth"
    torch.save(state, real)
    put("truncated_state_dict", real.read_bytes()[: real.stat().st_size // 2])
    real.unlink()
    torch.save({"conv.weight": torch.zeros(3, 3)}, folder / "wrong_keys.pth")
    files["wrong_keys"] = folder / "wrong_keys.pth"
    put("pickled_object", pickle.dumps(Path("/etc")))
    shapes = {k: torch.zeros(1) if i == 0 else v for i, (k, v) in enumerate(state.items())}
    torch.save(shapes, folder / "wrong_shape.pth")
    files["wrong_shape"] = folder / "wrong_shape.pth"
    (folder / "a_folder.pth").mkdir()
    files["a_folder"] = folder / "a_folder.pth"
    return files


def test_hostile_weights_files(sandbox: Sandbox) -> None:
    folder = sandbox.inputs / "weights"
    folder.mkdir()
    reference, _ = hostile_files.good_npz(sandbox.inputs, "reference.npz")
    files = _weights_corpus(folder)
    chosen = files if LONG else {k: files[k] for k in ("truncated_state_dict", "wrong_keys")}
    for name, path in chosen.items():
        _eval(sandbox, f"weights {name}", ["--real", str(reference), "--fake", str(reference),
                                           "--backbone-weights", str(path)], "error")
