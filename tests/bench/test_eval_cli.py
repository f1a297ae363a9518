"""`bench eval`: any two image sets (folder, .npz, datamodule:split) → FID/KID/IS/PRC JSON with its protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main


def _digits_uint8(start: int, n: int) -> np.ndarray:  # (n, 8, 8) uint8, real digits
    from sklearn.datasets import load_digits

    return (load_digits().images[start : start + n] * 16).clip(0, 255).astype(np.uint8)


def _run(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


@pytest.fixture
def npz_pair(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, images=_digits_uint8(0, 24)[..., None])  # (N, H, W, C)
    np.savez(b, images=_digits_uint8(100, 24)[:, None])  # (N, C, H, W)
    return a, b


def test_json_has_the_requested_keys_and_protocol(capsys, npz_pair, tmp_cache) -> None:
    a, b = npz_pair
    code, out, _ = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid,kid,is,prc",
                        "--kid-subsets", "5", "--kid-subset-size", "10", "--is-splits", "2", "--seed", "3", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density",
                           "coverage", "protocol"}
    proto = result["protocol"]
    assert proto["backbone"] == "efficientnet-lite0" and len(proto["backbone_sha256"]) == 64
    assert proto["resize"] == "bilinear-224" and proto["n_real"] == proto["n_fake"] == 24
    assert (proto["seed"], proto["splits"], proto["subsets"], proto["subset_size"]) == (3, 2, 5, 10)
    assert "torch" in proto["versions"]
    assert result["fid"] > 0 and result["is_mean"] >= 1


def test_same_images_score_as_identical(capsys, npz_pair, tmp_path: Path, tmp_cache) -> None:
    """FID(x, x) ≈ 0 and precision = recall = 1; a PNG folder of the same images gives the same numbers."""
    a, _ = npz_pair
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(_digits_uint8(0, 24)):
        Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")
    code, out, _ = _run(capsys, "--real", str(a), "--fake", str(folder), "--metrics", "fid,prc", "--json")
    assert code == 0
    result = json.loads(out)
    # ≈ 0: eigh round-off on 24-sample, rank-deficient 1280-d covariances leaves ~1e-3, against ~300 between
    # two different digit sets (test_json_has_the_requested_keys_and_protocol).
    assert abs(result["fid"]) < 1e-2
    assert result["precision"] == 1.0 and result["recall"] == 1.0


def test_datamodule_split_input_shares_the_run_cache(capsys, npz_pair, tmp_cache) -> None:
    _, b = npz_pair
    code, out, _ = _run(capsys, "--real", "digits:test", "--fake", str(b), "--metrics", "kid", "--kid-subset-size", "20",
                        "--kid-subsets", "3", "--json")
    assert code == 0 and json.loads(out)["protocol"]["n_real"] == 359
    cached = list(tmp_cache.glob("digits-*-test-efficientnet-lite0-*-bilinear-224-fwd2-features.pt"))
    assert len(cached) == 1


def test_subset_n(capsys, npz_pair, tmp_cache) -> None:
    a, b = npz_pair
    code, out, _ = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid", "--n", "10", "--json")
    assert code == 0 and json.loads(out)["protocol"]["n_fake"] == 10


def _write_png(path: Path, size: int, mode: str = "L") -> None:
    Image.fromarray(np.zeros((size, size) if mode == "L" else (size, size, 3), dtype=np.uint8), mode=mode).save(path)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "no such file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no .png"),
        (lambda p: (p / "m").mkdir() or _write_png(p / "m" / "a.png", 8) or _write_png(p / "m" / "b.png", 9) or p / "m",
         "share one size"),
        (lambda p: np.savez(p / "f.npz", x=np.zeros((4, 8, 8), np.float32)) or p / "f.npz", "uint8"),
        (lambda p: np.savez(p / "two.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(2)) or p / "two.npz",
         "exactly one array"),
        (lambda p: np.savez(p / "s.npz", x=np.zeros((4, 5, 8, 8), np.uint8)) or p / "s.npz", "channels"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", ".npz"),
        (lambda p: "digits:nosplit", "unknown split"),
        (lambda p: "nosuchdata:test", "unknown datamodule"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(capsys, npz_pair, tmp_path: Path, make, expected: str) -> None:
    _, b = npz_pair
    bad = str(make(tmp_path))
    code, out, err = _run(capsys, "--real", bad, "--fake", str(b))
    assert code == 2 and out == "" and len(err) == 1
    assert expected in err[0]


def test_unknown_metric_and_backbone(capsys, npz_pair) -> None:
    a, b = npz_pair
    code, _, err = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid,nope")
    assert code == 2 and "nope" in err[0] and "fid, kid, is, prc" in err[0]
    code, _, err = _run(capsys, "--real", str(a), "--fake", str(b), "--backbone", "inception-v4")
    assert code == 2 and "efficientnet-lite0" in err[0]


def test_resize_mode_is_applied_and_recorded(capsys, npz_pair, tmp_cache) -> None:
    """``--resize clean`` changes the resize the backbone applies, the number, and the recorded protocol."""
    a, b = npz_pair
    common = ["--real", str(a), "--fake", str(b), "--metrics", "fid", "--json"]
    results = {}
    for mode in ("bilinear", "clean"):
        code, out, _ = _run(capsys, *common, "--resize", mode)
        assert code == 0
        results[mode] = json.loads(out)
        assert results[mode]["protocol"]["resize"] == f"{mode}-224"
    assert results["bilinear"]["fid"] != pytest.approx(results["clean"]["fid"], rel=1e-3)


def test_unknown_resize_mode_exits_2(capsys, npz_pair) -> None:
    a, b = npz_pair
    code, out, err = _run(capsys, "--real", str(a), "--fake", str(b), "--resize", "lanczos")
    assert code == 2 and out == "" and len(err) == 1
    assert "lanczos" in err[0] and "tf1-bilinear, bilinear, clean" in err[0]


def test_help_names_every_resize_mode() -> None:
    from bench.backbones.resize import RESIZE_MODES
    from bench.cli import build_parser

    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    help_text = eval_parser.format_help()
    for mode in RESIZE_MODES:
        assert mode in help_text
