"""The ``bench`` command line: listings, one-line usage errors with exit code 2, and end-to-end suite runs."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from bench.backbones import BACKBONES
from bench.cli import main
from bench.leaderboard import RESULT_COLUMNS
from bench.metrics import METRICS
from bench.suites import SUITES
from datamodules import DATAMODULES
from models import MODELS
from models.fusion.operators import FUSIONS

REPO = Path(__file__).resolve().parents[2]
REGISTRIES = {
    "suites": SUITES, "models": MODELS, "datamodules": DATAMODULES, "metrics": METRICS, "backbones": BACKBONES,
    "fusions": FUSIONS,
}

REQUIRED_COLUMNS = (
    "suite", "family", "model", "datamodule", "seed", "metric", "value", "higher_is_better", "backbone",
    "backbone_sha256", "n_real", "n_fake", "resize", "split", "config_hash", "git_commit", "torch_version",
    "lightning_version", "timestamp", "wall_s", "status", "message",
)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    return lines[0]


# ------------------------------------------------------------------------------------------------------ list
@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_list_prints_registry_names(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", kind, "--names"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == REGISTRIES[kind].names()
    assert out.endswith("\n")


def test_list_unknown_kind_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["list", "nonsense"])
    assert info.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "nonsense" in line


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    one_error_line(capsys.readouterr().err)


def test_console_script_lists_models() -> None:
    bench = Path(sys.executable).with_name("bench")
    if not bench.exists():
        bench = REPO / ".venv" / "bin" / "bench"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([str(bench), "list", "models", "--names"], capture_output=True, text=True, timeout=120,
                          env=env,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == MODELS.names()


# ---------------------------------------------------------------------------------------------- usage errors
def run_error(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path) -> str:
    """Runs ``bench run`` expecting exit code 2 before any work starts; returns the one stderr line."""
    code = main(["run", *argv, "--out", str(out)])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert not out.exists(), "bad input must be rejected before anything is written"
    return one_error_line(captured.err)


def test_unknown_suite(capsys, tmp_path: Path) -> None:
    line = run_error(["--suite", "nosuchsuite"], capsys, tmp_path / "out")
    assert "nosuchsuite" in line
    for name in SUITES.names():
        assert name in line


def test_unknown_model_lists_the_suites_models(capsys, tmp_path: Path) -> None:
    line = run_error(["--suite", "quick", "--models", "vae,stylegan9"], capsys, tmp_path / "out")
    assert "stylegan9" in line
    for name in ("dcgan", "vae", "early-concat", "late-average", "unimodal-image", "unimodal-text"):
        assert name in line


def test_unknown_datamodule(capsys, tmp_path: Path) -> None:
    line = run_error(["--suite", "quick", "--datamodule", "imagenet-21k"], capsys, tmp_path / "out")
    assert "imagenet-21k" in line
    for name in DATAMODULES.names():
        assert name in line


@pytest.mark.parametrize("seeds", ["a,b", "0,x", ","])
def test_bad_seeds(capsys, tmp_path: Path, seeds: str) -> None:
    line = run_error(["--suite", "quick", "--seeds", seeds], capsys, tmp_path / "out")
    assert "--seeds" in line and seeds in line


@pytest.mark.parametrize("argv", [["--limit-batches", "0"], ["--max-epochs", "ten"], ["--accelerator", "tpu"]])
def test_bad_option_values_exit_2(capsys, tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--suite", "quick", *argv, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_invalid_suite_file_names_file_and_key(capsys, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    data = tiny_suite()
    data["trainer"]["max_epochs"] = "ten"
    path.write_text(yaml.safe_dump(data))
    line = run_error(["--suite", str(path)], capsys, tmp_path / "out")
    assert str(path) in line and "trainer.max_epochs" in line


def test_unparsable_suite_file_names_file(capsys, tmp_path: Path) -> None:
    path = tmp_path / "garbled.yaml"
    path.write_text("name: x\ntracks: [\n")
    line = run_error(["--suite", str(path)], capsys, tmp_path / "out")
    assert str(path) in line


def test_bad_model_argument_in_suite_is_a_usage_error(capsys, tmp_path: Path) -> None:
    path = tmp_path / "badarg.yaml"
    data = tiny_suite()
    data["tracks"][0]["models"]["vae"] = {"latent_size": 4}
    path.write_text(yaml.safe_dump(data))
    line = run_error(["--suite", str(path)], capsys, tmp_path / "out")
    assert str(path) in line and "latent_size" in line and "latent_dim" in line


def test_missing_tokenizer_weights_in_suite_is_a_usage_error(capsys, tmp_path: Path) -> None:
    """A model argument naming a file that is not there: exit 2 naming the suite file, the path and the fix."""
    path = tmp_path / "novq.yaml"
    missing = tmp_path / "no-such-vq-vae.pt"
    data = tiny_suite()
    data["tracks"][0]["models"] = {"gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16, "tokenizer": "vq",
                                           "tokenizer_weights": str(missing)}}
    path.write_text(yaml.safe_dump(data))
    line = run_error(["--suite", str(path)], capsys, tmp_path / "out")
    assert str(path) in line and str(missing) in line and "save_weights" in line


def test_bad_resize_mode_in_suite_is_a_usage_error(capsys, tmp_path: Path) -> None:
    path = tmp_path / "badresize.yaml"
    data = tiny_suite()
    data["eval"]["resize"] = "lanczos"
    path.write_text(yaml.safe_dump(data))
    line = run_error(["--suite", str(path)], capsys, tmp_path / "out")
    assert str(path) in line and "eval" in line and "lanczos" in line and "clean" in line


# ------------------------------------------------------------------------------------------------ end to end
def tiny_suite() -> dict[str, Any]:
    digits = {"digits": {"image_size": 16, "batch_size": 32}}
    return {
        "name": "tiny",
        "description": "end-to-end test suite",
        "seeds": [0],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1},
        # backbone_size 32 instead of 224: ~50x cheaper features on a 2-core CPU; the pipeline is the same
        "eval": {"reference": False, "n_fake": 32, "batch_size": 32, "kid_subsets": 5, "kid_subset_size": 16, "is_splits": 4, "backbone_size": 32,
                 "nll_samples": 2, "nll_images": 16},
        "tracks": [
            {
                "name": "generation",
                "primary_metric": "fid",
                "metrics": ["fid", "kid", "is", "prc", "mse", "psnr", "ssim", "nll-bpd"],
                "datamodules": digits,
                "models": {"dcgan": {"latent_dim": 8, "width": 8}, "vae": {"latent_dim": 4, "width": 8}},
            },
            {
                "name": "fusion",
                "primary_metric": "accuracy",
                "metrics": ["accuracy", "f1-macro"],
                "datamodules": {"captioned-digits": {"batch_size": 32}},
                "models": {
                    "early-concat": {"d_model": 16, "n_layers": 1},
                    "unimodal-text": {"d_model": 16, "n_layers": 1},
                },
            },
        ],
    }


EXPECTED_METRICS = {
    # a GAN has no reconstruction: mse/psnr/ssim are skipped for it; prc gives four rows
    "dcgan": {"fid", "kid", "is", "precision", "recall", "density", "coverage"},
    "vae": {"fid", "kid", "is", "precision", "recall", "density", "coverage", "mse", "psnr", "ssim", "nll-bpd"},
    "early-concat": {"accuracy", "f1-macro"},
    "unimodal-text": {"accuracy", "f1-macro"},
}
DATAMODULE_OF = {
    "dcgan": "digits", "vae": "digits", "early-concat": "captioned-digits", "unimodal-text": "captioned-digits",
}


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real-feature cache for the whole module: later runs reuse what the first computed."""
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def cache_env(feature_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(feature_cache))
    return feature_cache


def run_suite_cli(
    data: dict[str, Any], tmp_path: Path, name: str, capsys, extra: list[str] = ()
) -> tuple[int, dict, Path]:
    """Writes ``data`` as a suite file and runs ``bench run --json`` on it in-process."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / name
    code = main(["run", "--suite", str(path), *extra, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # stdout is exactly one JSON object
    assert isinstance(payload, dict)
    return code, payload, out


@pytest.mark.slow
def test_end_to_end_run_and_reproducibility(tmp_path: Path, cache_env: Path, capsys) -> None:
    data = tiny_suite()
    code, payload, out = run_suite_cli(data, tmp_path, "first", capsys, ["--seeds", "0,1"])
    assert code == 0, payload
    assert payload["suite"] == "tiny"
    assert payload["status_counts"] == {"ok": 8}
    assert Path(payload["results_csv"]) == out / "results.csv"

    # --- results.csv: long format, one row per (model, datamodule, seed, metric), full provenance
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert set(REQUIRED_COLUMNS) <= set(results.columns)
    expected = {(m, DATAMODULE_OF[m], s, metric) for m, metrics in EXPECTED_METRICS.items() for s in (0, 1)
                for metric in metrics}
    keys = list(zip(results["model"], results["datamodule"], results["seed"], results["metric"]))
    assert len(keys) == len(set(keys)), "duplicate result rows"
    assert set(keys) == expected
    assert (results["status"] == "ok").all(), results[["model", "seed", "status", "message"]]
    assert results["value"].map(math.isfinite).all()
    assert (results["suite"] == "tiny").all()
    assert (results["split"] == "test").all()
    assert (results["torch_version"] == torch.__version__).all()
    assert results["config_hash"].notna().all() and results["git_commit"].notna().all()
    assert results["timestamp"].notna().all() and (results["wall_s"] > 0).all()
    family = dict(zip(results["model"], results["family"]))
    assert family == {m: MODELS.get(m).family for m in EXPECTED_METRICS}
    n_test = len(DATAMODULES.get("digits")(image_size=16).split_tensors("test")["label"])
    nll = results["metric"] == "nll-bpd"
    assert (results.loc[~nll, "n_real"] == n_test).all()
    assert (results.loc[nll, "n_real"] == 16).all()  # eval.nll_images: the bound's images are recorded
    assert results.loc[nll, "protocol"].str.contains("importance_samples=2").all()
    prc_values = {"precision", "recall", "density", "coverage"}  # the four rows of the registered `prc`
    for metric, higher in results.groupby("metric")["higher_is_better"].unique().items():
        registered = "prc" if metric in prc_values else metric
        assert list(higher) == [bool(METRICS.get(registered).higher_is_better)]

    backbone_metrics = ["fid", "kid", "is", *prc_values]
    features = results[results["metric"].isin(backbone_metrics)]
    assert (features["backbone"] == "efficientnet-lite0").all()
    assert features["backbone_sha256"].map(lambda s: bool(re.fullmatch(r"[0-9a-f]{64}", str(s)))).all()
    assert (features["n_fake"] == 32).all()
    assert features["resize"].str.startswith("bilinear-").all()
    others = results[~results["metric"].isin(backbone_metrics)]
    assert others["backbone"].isna().all() or (others["backbone"].fillna("") == "").all()

    # --- leaderboard.csv: one row per (model, datamodule) with mean and std per metric
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(zip(board["model"], board["datamodule"])) == sorted(DATAMODULE_OF.items())
    for metric in ("fid", "kid", "is", "precision", "recall", "mse", "psnr", "ssim", "accuracy", "f1-macro"):
        assert f"{metric}_mean" in board.columns and f"{metric}_std" in board.columns
    assert (board["n_seeds"] == 2).all() and (board["status"] == "ok").all()
    for _, row in board.iterrows():
        for metric in EXPECTED_METRICS[row["model"]]:
            values = results[(results["model"] == row["model"]) & (results["metric"] == metric)]["value"]
            assert row[f"{metric}_mean"] == pytest.approx(values.mean(), rel=1e-4, abs=1e-8)
            assert row[f"{metric}_std"] == pytest.approx(values.std(ddof=1), rel=1e-3, abs=1e-8)
    gen = board[board["track"] == "generation"]
    assert list(gen["fid_mean"]) == sorted(gen["fid_mean"])  # lower FID first
    fusion = board[board["track"] == "fusion"]
    assert list(fusion["accuracy_mean"]) == sorted(fusion["accuracy_mean"], reverse=True)
    assert len(payload["leaderboard"]) == 4

    # --- the other files
    for name in ("leaderboard.md", "suite.yaml", "environment.json"):
        assert (out / name).is_file(), name
    assert yaml.safe_load((out / "suite.yaml").read_text())["seeds"] == [0, 1]
    assert "packages" in json.loads((out / "environment.json").read_text())
    markdown = (out / "leaderboard.md").read_text()
    assert "## Track `generation`" in markdown
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert (results["peak_mem_mb"] > 0).all() and (board["peak_mem_mb_max"] > 0).all()

    # --- a PNG sample grid per generator run, the first seed's linked from the Markdown
    for model in ("dcgan", "vae"):
        for seed in (0, 1):
            grid = out / "samples" / "generation" / f"{model}-digits-seed{seed}.png"
            with Image.open(grid) as img:
                assert img.size == (8 * 16 + 9 * 2, 8 * 16 + 9 * 2)  # 8×8 images of 16 px, 2-px padding
        assert f"[grid](samples/generation/{model}-digits-seed0.png)" in markdown
    assert not (out / "samples" / "fusion").exists()  # classifiers draw no samples
    cached = sorted(cache_env.glob("*.pt"))
    assert cached, "real features were not cached"

    # --- reproducibility: the same command into another folder gives the same numbers
    publish = tmp_path / "published"
    code2, _, out2 = run_suite_cli(data, tmp_path, "second", capsys, ["--seeds", "0,1", "--publish", str(publish)])
    assert code2 == 0
    published_md = (publish / "tiny.md").read_text()
    for model in ("dcgan", "vae"):  # the linked grids travel with the published Markdown
        assert f"[grid](tiny-samples/generation/{model}-digits-seed0.png)" in published_md
        assert (publish / "tiny-samples" / "generation" / f"{model}-digits-seed0.png").is_file()
    assert "](samples/" not in published_md
    assert sorted(cache_env.glob("*.pt")) == cached, "the second run did not reuse the cached real features"
    again = pd.read_csv(out2 / "results.csv")
    assert list(zip(again["model"], again["seed"], again["metric"])) == list(
        zip(results["model"], results["seed"], results["metric"])
    )
    assert again["value"].tolist() == results["value"].tolist()
    assert again["config_hash"].tolist() == results["config_hash"].tolist()


@pytest.mark.slow
def test_diverged_run_is_recorded_and_the_suite_goes_on(tmp_path: Path, cache_env: Path, capsys) -> None:
    data = tiny_suite()
    data["tracks"] = data["tracks"][:1]
    data["tracks"][0]["metrics"] = ["fid", "mse"]
    # beta = 1e300 (beyond float32) makes the VAE's loss (rec + beta * KL) infinite at the first step; inf itself
    # is refused by the suite checks
    data["tracks"][0]["models"]["vae"]["beta"] = 1e300
    code, payload, out = run_suite_cli(data, tmp_path, "diverge", capsys)
    assert code == 0  # divergence is a result, not a crash
    assert payload["status_counts"] == {"ok": 1, "diverged": 1}
    results = pd.read_csv(out / "results.csv")
    vae, dcgan = results[results["model"] == "vae"], results[results["model"] == "dcgan"]
    assert set(vae["metric"]) == {"fid", "mse"} and (vae["status"] == "diverged").all()
    assert vae["value"].isna().all()
    assert vae["message"].str.contains("train_").all()
    assert list(dcgan["metric"]) == ["fid"] and (dcgan["status"] == "ok").all()
    assert dcgan["value"].map(math.isfinite).all()
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["model"]) == ["dcgan", "vae"]  # the diverged model has no FID and is ranked last
    assert board.set_index("model").loc["vae", "status"] == "1 diverged"
    assert board.set_index("model").loc["vae", "n_seeds"] == 0


@pytest.mark.slow
def test_failed_run_is_recorded_with_exit_code_1(tmp_path: Path, cache_env: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from models.vae.vae import VAE

    def broken_step(self, batch, batch_idx):
        raise RuntimeError("boom in training_step")

    monkeypatch.setattr(VAE, "training_step", broken_step)
    data = tiny_suite()
    data["tracks"][0]["models"] = {"vae": {"latent_dim": 4, "width": 8}}
    data["tracks"][0]["metrics"] = ["mse", "psnr"]  # no backbone needed
    data["tracks"][0]["primary_metric"] = "mse"
    data["tracks"][1]["models"] = {"unimodal-text": {"d_model": 16, "n_layers": 1}}
    publish = tmp_path / "published"
    code, payload, out = run_suite_cli(data, tmp_path, "fail", capsys, ["--publish", str(publish)])
    assert not (out / "samples").exists()  # a failed generator saves no sample grid
    assert code == 1  # the suite ran, but a run failed
    assert payload["status_counts"] == {"ok": 1, "failed": 1}
    results = pd.read_csv(out / "results.csv")
    vae = results[results["model"] == "vae"]
    assert set(vae["metric"]) == {"mse", "psnr"} and (vae["status"] == "failed").all()
    assert vae["message"].str.contains("boom in training_step").all()
    assert vae["value"].isna().all()
    text = results[results["model"] == "unimodal-text"]
    assert set(text["metric"]) == {"accuracy", "f1-macro"} and (text["status"] == "ok").all()
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    assert board.loc["vae", "status"] == "1 failed" and board.loc["unimodal-text", "status"] == "ok"
    assert sorted(p.name for p in publish.iterdir()) == ["tiny-results.csv", "tiny.csv", "tiny.md"]
    assert (publish / "tiny.csv").read_text() == (out / "leaderboard.csv").read_text()


def test_model_with_no_applicable_metric_is_rejected_before_work(capsys, tmp_path: Path, cache_env: Path) -> None:
    data = tiny_suite()
    data["tracks"] = data["tracks"][:1]
    data["tracks"][0]["metrics"] = ["mse"]  # reconstruction only: nothing to score a GAN on
    data["tracks"][0]["primary_metric"] = "mse"
    path = tmp_path / "noscore.yaml"
    path.write_text(yaml.safe_dump(data))
    line = run_error(["--suite", str(path)], capsys, tmp_path / "out")
    assert str(path) in line and "dcgan" in line and "mse" in line


def test_model_missing_a_modality_is_rejected_before_work(capsys, tmp_path: Path, cache_env: Path) -> None:
    """--datamodule digits on a fusion track: the text model cannot read digits; exit 2 naming the modality."""
    data = tiny_suite()
    data["tracks"] = data["tracks"][1:]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["run", "--suite", str(path), "--datamodule", "digits", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "modalities" in err[0] and "text" in err[0]
    assert not (tmp_path / "out" / "results.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when no GPU is visible")
def test_gpu_requested_without_gpu_is_a_usage_error(capsys) -> None:
    """--accelerator gpu with no CUDA device: exit 2 in one line, before any work."""
    assert main(["run", "--suite", "quick", "--accelerator", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]


def test_missing_backbone_weights_file_is_a_usage_error(capsys, tmp_path: Path, cache_env: Path) -> None:
    """--backbone-weights pointing nowhere: exit 2 in one line naming the file, before any training."""
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite()))
    missing = tmp_path / "no-such-weights.pth"
    code = main(["run", "--suite", str(path), "--backbone-weights", str(missing), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(missing) in err[0]
    assert not (tmp_path / "out" / "results.csv").exists()
