"""Frictions a new user met (issue 14), each with a test that fails without its fix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.runner import batch_limit
from bench.spec import load_suite_file
from bench.suites import load_suite

REPO = Path(__file__).resolve().parents[2]


def test_fraction_that_leaves_no_batch_becomes_one_batch() -> None:
    assert batch_limit(0.2, 3) == 1  # Lightning refuses 0.2 * 3 < 1
    assert batch_limit(0.5, 10) == 0.5 and batch_limit(1.0, 3) == 1.0 and batch_limit(2, 3) == 2
    assert batch_limit(0.2, 0) == 0.2


def test_limit_batches_fraction_runs_on_small_loaders(tmp_path: Path, monkeypatch, capsys) -> None:
    """`--limit-batches 0.2` on loaders of fewer than 5 batches: every run used to fail after training started."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    data = {
        "name": "limits", "seeds": [0],
        "eval": {"reference": False, "backbone_size": 32, "n_fake": 16, "batch_size": 16, "kid_subsets": 2, "kid_subset_size": 8},
        "tracks": [{"name": "gen", "primary_metric": "kid", "metrics": ["kid"],
                    "datamodules": {"digits": {"image_size": 8, "batch_size": 256}},  # 2 val batches, 5 train
                    "models": {"dcgan": {"latent_dim": 8, "width": 8}}}],
    }
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--limit-batches", "0.2", "--json"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert (results["status"] == "ok").all()


def test_datamodule_override_keeps_the_tracks_arguments(tmp_path: Path, capsys) -> None:
    """`--datamodule captioned-digits` on quick's generation track (digits at 16 px) keeps image_size 16; it used
    to run on captioned-digits' default 8x8 images with a quarter of the model's parameters."""
    spec = load_suite("quick")
    assert main(["run", "--suite", "quick", "--datamodule", "captioned-digits", "--models", "vae", "--dry-run",
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "keeps its datamodule arguments image_size=16" in err
    own = spec.tracks[0].datamodules["digits"]
    over = spec.with_overrides(datamodule="captioned-digits", models=["vae"],
                               datamodule_params=frozenset({"image_size", "batch_size", "occlusion"}))
    assert over.tracks[0].datamodules == {"captioned-digits": own}
    assert not (tmp_path / "out").exists()


def test_datamodule_override_reports_dropped_arguments(tmp_path: Path, capsys) -> None:
    data = yaml.safe_load((REPO / "bench/suites/quick.yaml").read_text())
    data["tracks"] = data["tracks"][:1]
    data["tracks"][0]["datamodules"] = {"digits": {"image_size": 16}}
    data["tracks"][0]["datamodules"]["digits"]["batch_size"] = 32
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_suite_file(path)
    over = spec.with_overrides(datamodule="fashion-mnist", datamodule_params=frozenset({"batch_size", "data_dir"}))
    assert over.tracks[0].datamodules == {"fashion-mnist": {"batch_size": 32}}


def test_make_quick_leaves_the_tracked_tree_alone() -> None:
    """The README's main job writes under runs/; publishing is the explicit `make publish-quick`."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "quick", "STAMP=Makefile"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    line = next(line for line in dry.splitlines() if "bench run" in line)
    assert "--publish" not in line and "--out runs/quick" in line
    publish = subprocess.run(["make", "-n", "publish-quick", "STAMP=Makefile"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert "--publish leaderboards" in publish
