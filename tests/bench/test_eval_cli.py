"""`bench eval`: any two image sets (folder, .npz, datamodule:split) scored by bench run's evaluator → JSON with
its protocol; its defaults are torch-fidelity's."""

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
    assert set(result) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density",
                           "coverage", "rows", "protocol"}
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["kid"]["value_std"] == result["kid_std"] and rows["fid"]["value_std"] is None
    assert "subset_size=10,subset_draw=numpy choice,seed=3" in rows["kid"]["protocol"]
    proto = result["protocol"]
    assert proto["backbone"] == "efficientnet-lite0" and len(proto["backbone_sha256"]) == 64
    assert proto["resize"] == "bilinear-224" and proto["n_real"] == proto["n_fake"] == 24
    assert (proto["seed"], proto["splits"], proto["subsets"], proto["subset_size"]) == (3, 2, 5, 10)
    assert "torch" in proto["versions"]
    assert result["fid"] > 0 and result["is"] >= 1


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


def test_backbone_size_and_device_options(capsys, npz_pair, tmp_cache) -> None:
    """--backbone-size is the suites' eval.backbone_size (recorded in the resize); a device that is not there
    is one line, exit 2."""
    a, b = npz_pair
    code, out, _ = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid", "--backbone-size", "128",
                        "--json")
    assert code == 0 and json.loads(out)["protocol"]["resize"] == "bilinear-128"
    import torch

    if not torch.cuda.is_available():
        code, out, err = _run(capsys, "--real", str(a), "--fake", str(b), "--device", "cuda")
        assert code == 2 and out == "" and len(err) == 1 and "CUDA is not available" in err[0]
    code, out, err = _run(capsys, "--real", str(a), "--fake", str(b), "--device", "toaster")
    assert code == 2 and len(err) == 1 and "not a torch device" in err[0]


def test_kid_std_and_clamped_subset_reach_the_rows(capsys, npz_pair, tmp_cache) -> None:
    """The default subset size (1000) is clamped to the 24 images: the protocol says so; the std is a value."""
    a, b = npz_pair
    code, out, err = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "kid", "--kid-subsets", "4",
                          "--json")
    assert code == 0
    row = json.loads(out)["rows"][0]
    assert "subset_size=24 (asked 1000; clamped to the sample size)" in row["protocol"]
    assert row["value_std"] > 0 and any("clamped" in line for line in err)


def test_metric_on_a_named_backbone(capsys, npz_pair, tmp_cache) -> None:
    """``fid@<backbone>`` scores on that backbone, named so in the rows, next to the default backbone's."""
    a, b = npz_pair
    code, out, _ = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid,fd@classifier-indomain-digits",
                        "--json")
    assert code == 0
    rows = {r["metric"]: r for r in json.loads(out)["rows"]}
    assert rows["fid"]["backbone"] == "efficientnet-lite0"
    assert rows["fd@classifier-indomain-digits"]["backbone"] == "classifier-indomain-digits"
    assert rows["fd@classifier-indomain-digits"]["value"] != rows["fid"]["value"]
    code, _, err = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid@nope")
    assert code == 2 and "unknown backbone 'nope'" in err[0]


def test_bench_eval_equals_bench_run_scoring(npz_pair, tmp_cache) -> None:
    """The same generated images scored by bench run's evaluator (a model whose samples they are) and by bench
    eval give the same values and the same protocol text."""
    import torch

    from bench.backbones.build import build_backbone
    from bench.eval_images import evaluate_image_sets
    from bench.evaluate import Evaluator
    from bench.image_inputs import ImageSet
    from bench.spec import EvalSpec
    from datamodules import DATAMODULES
    from models.base import ImageGenerator

    dm = DATAMODULES.get("digits")()
    dm.setup()
    fake = torch.from_numpy(_digits_uint8(500, 40))[:, None]  # (40, 1, 8, 8) uint8

    class Replay(ImageGenerator):
        def sample(self, n, generator=None):  # the stored images in order, as [0, 1] floats
            out, self.i = fake[self.i: self.i + n].float() / 255, getattr(self, "i", 0) + n
            return out

        i = 0

    backbone = build_backbone("efficientnet-lite0", size=64)
    metrics = ("fid", "kid", "is", "prc")
    spec = EvalSpec(n_fake=40, batch_size=16, kid_subsets=5, kid_subset_size=20, is_splits=2, backbone_size=64)
    run = Evaluator(spec, metrics, backbone, tmp_cache).evaluate(Replay(), dm, seed=7)
    real = ImageSet((dm.split_tensors("test")["image"] * 255).round().to(torch.uint8), "digits:test",
                    cache_identity=(dm.identity(), "test"))
    ev = evaluate_image_sets(real, ImageSet(fake, "replay"), list(metrics), backbone, seed=7, batch_size=16,
                             kid_subsets=5, kid_subset_size=20, is_splits=2, cache_dir=tmp_cache)
    assert [r.metric for r in run] == [r["metric"] for r in ev["rows"]]
    for a, b in zip(run, ev["rows"]):
        assert a.value == pytest.approx(b["value"], rel=1e-6, abs=1e-9), a.metric
        assert a.protocol == b["protocol"] and a.resize == b["resize"] == "bilinear-64"
        assert (a.value_std is None) == (b["value_std"] is None)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 24, 40), (3, 299, 299)], ids=["gray28", "rgb24x40", "rgb299"])
def test_defaults_equal_torch_fidelity(capsys, tmp_path: Path, inception_weights_file, shape) -> None:
    """With the Inception backbone and no protocol flags (but the subset size torch-fidelity needs for 16 images),
    bench eval's FID, KID and IS equal torch_fidelity.calculate_metrics' defaults (seed 2020, 10 IS splits, 100
    KID subsets): FID and IS to 1e-6 relative, KID to 1e-4 (torch-fidelity evaluates the kernel in float32,
    we in float64; equal to 1e-10 with float64 features, tests/metrics/test_kid.py)."""
    torch_fidelity = pytest.importorskip("torch_fidelity")
    import torch

    n = 16
    gen = torch.Generator().manual_seed(sum(shape))
    real = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    fake = (torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8).float() * 0.7).to(torch.uint8)
    a, b = tmp_path / "real.npz", tmp_path / "fake.npz"
    np.savez(a, images=real.numpy())
    np.savez(b, images=fake.numpy())
    code, out, _ = _run(capsys, "--real", str(a), "--fake", str(b), "--metrics", "fid,kid,is", "--backbone",
                        "inception-v3-compat", "--backbone-weights", str(inception_weights_file),
                        "--kid-subset-size", "8", "--json")
    assert code == 0
    ours = json.loads(out)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # torch-fidelity takes 3 channels

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    # torch-fidelity scores IS on input1: give it the fake set first
    ref = torch_fidelity.calculate_metrics(
        input1=Images(fake), input2=Images(real), fid=True, kid=True, isc=True, kid_subset_size=8,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(inception_weights_file),
        cuda=False, cache=False, verbose=False, save_cpu_ram=True)
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    assert ours["is"] == pytest.approx(ref["inception_score_mean"], rel=1e-6)
    assert ours["is_std"] == pytest.approx(ref["inception_score_std"], rel=1e-6, abs=1e-9)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)
