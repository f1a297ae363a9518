"""`bench run --fast` of a tiny suite scoring joint-coherence (in-process, through ``bench.cli.main``), and the bad
inputs: a model that cannot sample both modalities, a datamodule that cannot read its captions as labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.cli import main

TINY_VAE = {"latent_dim": 4, "width": 8, "d_model": 8, "n_heads": 2}


def suite(models: dict, datamodules: dict | None = None, metrics: list[str] | None = None) -> dict:
    metrics = metrics or ["joint-coherence", "joint-coherence-real"]
    return {
        "name": "joint", "seeds": [0],
        "eval": {"n_fake": 32, "batch_size": 16, "classifier_backbone": "classifier-indomain-digits"},
        "tracks": [{"name": "generation", "primary_metric": metrics[0], "metrics": metrics,
                    "datamodules": datamodules or {"captioned-digits": {"batch_size": 32}}, "models": models}],
    }


def run(tmp_path: Path, spec: dict, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Path]:
    path, out = tmp_path / "joint.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return main(["run", "--suite", str(path), "--fast", "--out", str(out)]), out


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_fast_run_scores_joint_coherence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run(tmp_path, suite({"mvae-late": TINY_VAE}), monkeypatch)
    assert code == 0
    results = pd.read_csv(out / "results.csv")
    rows = results.set_index("metric").loc[["joint-coherence", "joint-coherence-real"]]
    assert (rows["status"] == "ok").all() and (rows["model"] == "mvae-late").all()
    assert rows["value"].between(0, 1).all()
    assert rows.loc["joint-coherence-real", "value"] >= 0.8  # the real pairs under the shipped classifier
    assert (rows["backbone"] == "classifier-indomain-digits").all() and rows["higher_is_better"].all()
    assert "samples=32" in rows.loc["joint-coherence", "protocol"]  # --fast caps n_fake at 64; the suite asks 32
    valid = results.set_index("metric").loc["valid-captions"]
    assert 0 <= valid["value"] <= 1 and valid["higher_is_better"]
    assert rows.loc["joint-coherence", "n_fake"] == 32 and rows.loc["joint-coherence-real", "n_real"] == 359
    assert "pairs=359 real images of test" in rows.loc["joint-coherence-real", "protocol"]
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    for metric in ("joint-coherence", "joint-coherence-real"):  # one seed: the mean is the value
        assert board.loc["mvae-late", f"{metric}_mean"] == pytest.approx(rows.loc[metric, "value"])


def test_a_model_without_sample_joint_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, suite({"early-concat": {}}, metrics=["joint-coherence"]), monkeypatch)
    assert code == 2 and not out.exists()
    line = one_error_line(capsys)
    assert "joint-coherence" in line and "early-concat" in line


def test_a_datamodule_without_a_caption_parser_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.datamodules.test_fashion_mnist import write_idx

    rng = np.random.default_rng(0)
    data = tmp_path / "fashion"
    data.mkdir()
    for prefix, n in (("train", 40), ("t10k", 8)):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    fashion = {"captioned-fashion-mnist": {"data_dir": str(data), "val_size": 8, "batch_size": 8}}
    code, _ = run(tmp_path, suite({"mvae-late": TINY_VAE}, fashion, ["joint-coherence"]), monkeypatch)
    assert code == 2
    line = one_error_line(capsys)
    assert "joint-coherence" in line and "captioned-fashion-mnist" in line and "caption_label_sets" in line
