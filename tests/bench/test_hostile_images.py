"""Hostile inputs of ``bench eval``: every bad file or size is a one-line InputError (exit 2), every awkward but
valid file (16-bit, palette, opaque alpha, bilevel, CMYK, upper-case suffixes) is read with the right values."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.errors import InputError
from bench.eval_images import EvalInputError, check_request, evaluate_image_sets
from bench.image_inputs import ImageInputError, ImageSet, load_image_set
from tests import hostile_files as hf

REPO = Path(__file__).resolve().parents[2]
#: Cases whose files load; they are refused by the size check of the evaluation (FID/KID need 2 images).
TOO_FEW = {"one_image", "one_image_npz"}
#: A phrase each refusal must contain.
EXPECTED_PHRASE = {
    "truncated_png": "corrupt or truncated image", "text_as_png": "not a PNG/JPEG image",
    "empty_png": "not a PNG/JPEG image", "bomb_png": "decompression bomb", "warning_bomb_png": "decompression bomb",
    "large_png": "over the limit of 67108864", "broken_symlink": "broken symbolic link",
    "folder_named_png": "is a folder", "rgba_transparent": "has transparent pixels",
    "la_transparent": "has transparent pixels", "palette_transparent": "has transparent pixels",
    "mixed_sizes": "share one size", "one_image": "FID needs at least 2 images per set",
    "empty_folder": "no .png/.jpg/.jpeg files", "corrupt_newline_name": "bad name.png",
    "pickled_npz": "pickled", "truncated_npz": "corrupt or truncated .npz", "npy_as_npz": "is an .npy file",
    "pickle_as_npz": "not an .npz archive", "float_npz": "found dtype float32", "int64_npz": "found dtype int64",
    "no_array_npz": "exactly one array, found 0", "two_arrays_npz": "exactly one array, found 2",
    "zero_images_npz": "holds no images", "zero_axis_npz": "zero-size axis", "scalar_npz": "found shape ()",
    "four_channel_npz": "1 or 3 channels", "one_image_npz": "FID needs at least 2 images per set",
    "huge_shape_npz": "over the limit", "lying_shape_npz": "truncated or forged",
    "not_npy_member_npz": "is not an .npy array", "corrupt_member_npz": "corrupt or truncated .npz",
    "broken_symlink_npz": "broken symbolic link", "unreadable_png": "permission denied",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("hostile")
    return {name: (path, expected) for name, path, expected in hf.write_corpus(folder)}


def _refusal(path: Path) -> InputError:
    """The InputError that loading ``path`` and checking it for the default metrics (fid, kid) raises."""
    with pytest.raises(InputError) as info:
        images = load_image_set(str(path))
        check_request(len(images.images), 8, ["fid", "kid"], kid_subset_size=1000)
    return info.value


def test_every_refused_case_has_its_phrase(corpus) -> None:
    assert {name for name, (_, expected) in corpus.items() if expected == "error"} <= set(EXPECTED_PHRASE)


@pytest.mark.parametrize("name", [w.__name__ for w, _ in hf.CASES])
def test_each_case_loads_or_is_refused_in_one_line(corpus, name: str) -> None:
    path, expected = corpus[name]
    if expected == "ok":
        images = load_image_set(str(path)).images
        assert images.dtype == torch.uint8 and images.shape[0] >= 2 and images.shape[1] in (1, 3)
        return
    err = _refusal(path)
    message = str(err)
    assert "\n" not in message and EXPECTED_PHRASE[name] in message, message
    if name not in TOO_FEW:  # a file problem names the file (or the folder / .npz that is the input)
        assert isinstance(err, ImageInputError) and str(path).replace("\n", " ") in message


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch) -> None:
    """Root reads files whatever their permissions, so the PermissionError is also simulated."""
    from PIL import Image as PILImage

    folder, _ = hf.unreadable_png(tmp_path)
    try:
        if not hf.running_as_root():
            assert "locked.png: cannot be read (permission denied)" in str(_refusal(folder))
    finally:
        (folder / "locked.png").chmod(0o644)
    real_open = PILImage.open

    def deny(fp, *args, **kwargs):
        if Path(fp).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PILImage, "open", deny)
    assert "locked.png: cannot be read (permission denied)" in str(_refusal(folder))


# ---- pixel values ------------------------------------------------------------------------------------------


def _load_one(tmp_path: Path, data: bytes | Image.Image, name: str = "x.png") -> np.ndarray:
    """The uint8 array (C, H, W) of a folder of one image file (loading does not check set sizes)."""
    folder = tmp_path / f"one-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    if isinstance(data, bytes):
        (folder / name).write_bytes(data)
    else:
        data.save(folder / name)
    return load_image_set(str(folder)).images[0].numpy()


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 32896, 65535, 65280, 383, 514]], np.uint16)
    gray = _load_one(tmp_path, hf.png16(values))  # (1, 1, 8)
    assert gray[0, 0].tolist() == [0, 0, 1, 128, 255, 255, 1, 2]  # v >> 8: 65535 -> 255, 32896 -> 128
    rgb = _load_one(tmp_path, hf.png16(np.repeat(values[..., None], 3, axis=-1)))  # (3, 1, 8)
    assert (rgb == gray).all()  # 16-bit gray and 16-bit RGB agree (Pillow decodes 16-bit RGB to its high byte)


def test_8_bit_and_16_bit_copies_of_an_image_are_equal(corpus) -> None:
    eight_bit = hf._gray(6)  # what png16_gray stores, times 257
    assert (load_image_set(str(corpus["png16_gray"][0])).images[:, 0].numpy() == eight_bit).all()
    eight_bit_rgb = hf._rgb(7).transpose(0, 3, 1, 2)
    assert (load_image_set(str(corpus["png16_rgb"][0])).images.numpy() == eight_bit_rgb).all()


def _tiff(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "TIFF")
    return buf.getvalue()


def test_32_bit_integer_images_by_their_range(tmp_path: Path) -> None:
    """Mode I (here a TIFF named .png: Pillow reads by content): 8-bit values as they are, 16-bit ones >> 8."""
    assert _load_one(tmp_path, _tiff(np.array([[0, 7, 255]], np.int32)))[0, 0].tolist() == [0, 7, 255]
    assert _load_one(tmp_path, _tiff(np.array([[0, 256, 65535]], np.int32)))[0, 0].tolist() == [0, 1, 255]
    for bad, span in ((np.array([[0, 70000]], np.int32), "[0, 70000]"), (np.array([[-1, 3]], np.int32), "[-1, 3]")):
        with pytest.raises(ImageInputError, match=re.escape(f"mode I (32-bit integer) values span {span}")):
            _load_one(tmp_path, _tiff(bad))
    with pytest.raises(ImageInputError, match="mode F"):
        _load_one(tmp_path, _tiff(np.array([[0.5, 1.0]], np.float32)))


def test_opaque_alpha_is_dropped_and_other_modes_convert(tmp_path: Path, corpus) -> None:
    rgb = hf._rgb(8).transpose(0, 3, 1, 2)  # what rgba_opaque stores under alpha 255
    assert (load_image_set(str(corpus["rgba_opaque"][0])).images.numpy() == rgb).all()
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    la = Image.fromarray(np.stack([gray, np.full_like(gray, 255)], axis=-1), mode="LA")
    assert (_load_one(tmp_path, la)[0] == gray).all()
    palette = Image.fromarray(hf._rgb(30, 1)[0]).quantize(8)
    assert (_load_one(tmp_path, palette) == np.asarray(palette.convert("RGB")).transpose(2, 0, 1)).all()
    bilevel = _load_one(tmp_path, Image.fromarray(gray > 31))
    assert set(np.unique(bilevel).tolist()) == {0, 255} and bilevel.shape == (1, 8, 8)
    assert set(np.unique(load_image_set(str(corpus["bilevel"][0])).images).tolist()) <= {0, 255}
    assert load_image_set(str(corpus["cmyk_jpeg"][0])).images.shape == (4, 3, 8, 8)


def test_grayscale_trns_colour_counts_as_transparency(tmp_path: Path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    folder = tmp_path / "trns"
    folder.mkdir()
    Image.fromarray(gray).save(folder / "used.png", transparency=5)  # pixel value 5 is transparent
    with pytest.raises(ImageInputError, match="used.png: has transparent pixels \\(1 of 64"):
        load_image_set(str(folder))
    (folder / "used.png").unlink()
    Image.fromarray(gray).save(folder / "unused.png", transparency=200)  # no pixel is 200: all opaque
    assert (load_image_set(str(folder)).images[0, 0].numpy() == gray).all()


def test_upper_case_suffixes_and_datamodule_split_errors(corpus) -> None:
    assert load_image_set(str(corpus["upper_case_npz"][0])).images.shape == (4, 1, 8, 8)
    assert load_image_set(str(corpus["upper_case_suffix"][0])).images.shape == (4, 1, 8, 8)
    with pytest.raises(ImageInputError, match="digits:nosuchsplit: unknown split 'nosuchsplit'; valid splits"):
        load_image_set("digits:nosuchsplit")


# ---- sizes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_real, n_fake, metrics, kwargs, phrase",
    [
        (1, 10, ["fid"], {}, "FID needs at least 2 images per set (for the covariance), got 1 real and 10 fake"),
        (10, 10, ["fid"], {"n": 1}, "FID needs at least 2 images per set (for the covariance), got 1 real and 1 "
                                    "fake (after --n 1)"),
        (10, 10, ["kid"], {"kid_subset_size": 1}, "--kid-subset-size must be >= 2"),
        (10, 1, ["kid"], {}, "KID needs at least 2 images per set"),
        (20, 20, ["is"], {"is_splits": 50}, "IS with 50 splits needs at least 50 fake images (one per split), got 20"),
        (3, 10, ["prc"], {}, "(k=3) need at least 4 images per set (k + 1), got 3 real and 10 fake"),
        (10, 10, ["is"], {"seed": -1}, "--seed must be in [0, 2**32 - 1], got -1"),
        (10, 10, ["fid"], {"batch_size": 0}, "--batch-size must be >= 1"),
    ],
)
def test_too_small_requests_are_refused(n_real, n_fake, metrics, kwargs, phrase: str) -> None:
    with pytest.raises(EvalInputError) as info:
        check_request(n_real, n_fake, metrics, **kwargs)
    assert phrase in str(info.value)


def test_minimum_sizes_are_accepted() -> None:
    check_request(2, 2, ["fid", "kid"], kid_subset_size=2)
    check_request(4, 4, ["prc"])
    check_request(100, 20, ["is"], is_splits=20)
    check_request(1, 20, ["is"], is_splits=20)  # IS does not use the real set


def _set(n: int, channels: int = 1) -> ImageSet:
    return ImageSet(torch.zeros(n, channels, 8, 8, dtype=torch.uint8), f"{n} images")


def test_sizes_are_checked_before_any_feature(monkeypatch) -> None:
    from bench.providers import UnitInputs

    monkeypatch.setattr(UnitInputs, "_run", lambda *a, **k: pytest.fail("features were computed"))
    with pytest.raises(EvalInputError, match="FID needs"):
        evaluate_image_sets(_set(1), _set(10), ["fid"], backbone=None)


class _Stub:
    registry_name, weights_sha256, forward_version, resize, num_features = "stub", "0" * 64, 1, "none", 16


def _stub_features(monkeypatch, real: torch.Tensor, fake: torch.Tensor) -> None:
    """The evaluator's backbone pass returns ``real`` / ``fake`` as the features of each source."""
    from bench.providers import UnitInputs

    monkeypatch.setattr(UnitInputs, "_run", lambda self, passes, batches, total, label, keep=False: [
        (real if label.startswith("real") else fake, None) for _ in passes])


def test_kid_subset_size_is_clamped_and_recorded(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(0)
    _stub_features(monkeypatch, torch.randn(5, 16, generator=gen), torch.randn(7, 16, generator=gen))
    real, fake = ImageSet(_set(5).images, "real"), ImageSet(_set(7).images, "fake")
    out = evaluate_image_sets(real, fake, ["kid"], _Stub(), kid_subsets=3, kid_subset_size=1000)
    assert out["protocol"]["subset_size"] == 5 and math.isfinite(out["kid"])


def test_non_finite_features_or_values_are_errors_not_numbers(monkeypatch) -> None:
    import bench.metrics.kid as kid

    gen = torch.Generator().manual_seed(0)
    good, bad = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    bad[2, 3] = float("nan")
    real, fake = ImageSet(_set(6).images, "real"), ImageSet(_set(6).images, "fake")
    _stub_features(monkeypatch, good, bad)
    with pytest.raises(EvalInputError, match="backbone stub gave non-finite fake features for 1 of 6 images"):
        evaluate_image_sets(real, fake, ["fid"], _Stub())
    _stub_features(monkeypatch, good, good.flip(0))
    monkeypatch.setattr(kid, "kernel_distance", lambda *a: (torch.tensor(float("inf")), torch.tensor(0.0)))
    with pytest.raises(EvalInputError, match="kid came out inf on 6 fake and 6 real images; likely cause"):
        evaluate_image_sets(real, fake, ["kid"], _Stub())


# ---- end to end --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:FID with 4 real:UserWarning")
def test_16_bit_folder_scores_like_its_8_bit_copy(capsys, corpus, tmp_path: Path) -> None:
    """The real backbone sees identical images: FID ≈ 0 between a 16-bit folder and its 8-bit copy."""
    eight = tmp_path / "eight"
    eight.mkdir()
    for i, image in enumerate(hf._gray(6)):
        Image.fromarray(image, mode="L").save(eight / f"{i}.png")
    code = main(["eval", "--real", str(corpus["png16_gray"][0]), "--fake", str(eight), "--metrics", "fid,kid",
                 "--cache-dir", str(tmp_path / "cache"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert abs(result["fid"]) < 1e-2 and result["protocol"]["subset_size"] == 4


@pytest.mark.parametrize(
    "real, extra, phrase",
    [
        ("good", ["--kid-subset-size", "1"], "--kid-subset-size must be >= 2"),
        ("good", ["--n", "1"], "FID needs at least 2 images per set (for the covariance), got 1 real and 1 fake "
                               "(after --n 1)"),
        ("one_image", [], "FID needs at least 2 images per set"),
        ("good", ["--metrics", "prc"], "need at least 4 images per set (k + 1), got 8 real and 3 fake"),
        ("digits:nosuchsplit", [], "digits:nosuchsplit: unknown split 'nosuchsplit'"),
        ("png16_gray", ["--seed", "-3"], "--seed must be in [0, 2**32 - 1], got -3"),
        ("pickled_npz", [], "pickled.npz: holds Python objects"),
        ("bomb_png", [], "bomb.png: refused as a possible decompression bomb"),
    ],
)
def test_cli_errors_exit_2_with_one_line(capsys, corpus, tmp_path: Path, real: str, extra: list[str],
                                         phrase: str) -> None:
    """``bench.cli.main`` in process (fast); sizes are checked before any feature is computed."""
    fake = hf.good_npz(tmp_path, count=3 if "prc" in extra else 8)[0]
    paths = {"good": hf.good_npz(tmp_path, "real.npz")[0], **{name: path for name, (path, _) in corpus.items()}}
    code = main(["eval", "--real", str(paths.get(real, real)), "--fake", str(fake), "--cache-dir",
                 str(tmp_path / "c"), *extra])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and captured.out == "" and len(lines) == 1 and lines[0].startswith("bench: error:")
    assert phrase in lines[0], lines[0]


def test_missing_datamodule_data_is_one_line(capsys, monkeypatch, tmp_path: Path) -> None:
    from datamodules import DATAMODULES, DataUnavailableError

    def missing(self, stage=None):
        raise DataUnavailableError("digits: the data files are missing\n(install them with make data)")

    monkeypatch.setattr(DATAMODULES.get("digits"), "setup", missing)
    code = main(["eval", "--real", "digits:test", "--fake", str(hf.good_npz(tmp_path)[0])])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == ["bench: error: digits: the data files are missing (install them with make data)"]


def test_real_cli_exits_2_with_one_line(corpus, tmp_path: Path) -> None:
    """The installed entry point in subprocesses (run side by side: each spends seconds importing torch)."""
    good, good20 = hf.good_npz(tmp_path)[0], hf.good_npz(tmp_path, "good20.npz", 20)[0]
    runs = {  # name -> (arguments, phrase of the error line)
        "truncated_png": (["--real", str(corpus["truncated_png"][0]), "--fake", str(good)],
                          "truncated.png: corrupt or truncated image"),
        "is_splits": (["--real", str(good), "--fake", str(good20), "--metrics", "is", "--is-splits", "50"],
                      "IS with 50 splits needs at least 50 fake images (one per split), got 20"),
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "bench", "eval", *args, "--cache-dir", str(tmp_path / "c")],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, _) in runs.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2 and out == "" and "Traceback" not in err, (name, err)
        assert len(lines) == 1 and lines[0].startswith("bench: error:") and runs[name][1] in lines[0], (name, err)
