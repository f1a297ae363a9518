"""The ``real-data`` reference row: real images of a disjoint split scored exactly as a model's samples are."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bench.cli import main
from bench.reference import REFERENCE_LABEL, RealDataReference, reference_model, reference_split
from datamodules import DATAMODULES


def test_reference_images_come_from_a_disjoint_split_without_replacement() -> None:
    assert reference_split("test") == "train" and reference_split("val") == "train"
    assert reference_split("train") == "test"
    images = torch.arange(10.0).reshape(10, 1, 1, 1) / 10
    model = RealDataReference(images, "train")
    gen = torch.Generator().manual_seed(3)
    drawn = torch.cat([model.sample(4, gen), model.sample(4, gen)]).flatten().tolist()
    assert len(set(drawn)) == 8  # one permutation, no image twice
    with pytest.raises(ValueError, match="fewer"):
        model.sample(4, gen)
    dm = DATAMODULES.get("digits")()
    dm.setup()
    assert reference_model(dm, "test", 10**6) is None  # not enough images: no reference row
    assert reference_model(dm, "test", 16).split == "train"


def test_generative_tracks_get_a_reference_row(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    data = {
        "name": "reference", "seeds": [0, 1],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1},
        "eval": {"backbone_size": 32, "n_fake": 32, "batch_size": 32, "kid_subsets": 4, "kid_subset_size": 16,
                 "reference": False},
        "tracks": [{"name": "gen", "primary_metric": "kid", "metrics": ["kid", "mse"],
                    "datamodules": {"digits": {"image_size": 8}},
                    "models": {"vae": {"latent_dim": 4, "width": 8}}}],
    }
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(data))
    first, ref_only = tmp_path / "first", tmp_path / "ref"
    assert main(["run", "--suite", str(suite), "--out", str(first), "--json"]) == 0  # no reference row
    assert REFERENCE_LABEL not in set(pd.read_csv(first / "results.csv")["model"])

    # the reference row alone, for a published leaderboard: `--models real-data`, nothing trains
    data["eval"]["reference"] = True
    suite.write_text(yaml.safe_dump(data))
    assert main(["run", "--suite", str(suite), "--out", str(ref_only), "--models", REFERENCE_LABEL, "--json"]) == 0
    ref = pd.read_csv(ref_only / "results.csv")
    assert set(ref["model"]) == {REFERENCE_LABEL} and not (ref_only / "weights").exists()
    assert list(ref["metric"]) == ["kid", "kid"] and (ref["family"] == "reference").all()  # no mse: nothing to rebuild
    assert (ref["status"] == "ok").all() and (ref["n_fake"] == 32).all() and sorted(ref["seed"]) == [0, 1]

    merged = tmp_path / "merged"
    assert main(["report", "--suite", str(suite), "--results", str(first / "results.csv"),
                 str(ref_only / "results.csv"), "--out", str(merged)]) == 0
    board = pd.read_csv(merged / "leaderboard.csv")
    assert list(board["model"]) == [REFERENCE_LABEL, "vae"]  # ranked first: the floor of the protocol
    assert board.loc[0, "kid_mean"] < board.loc[1, "kid_mean"]  # real images beat a 2-batch VAE
    text = (merged / "leaderboard.md").read_text()
    assert "is not a model: 32 real images of the `train` split" in text

    # the flag is in no key: rerunning the first folder keeps its vae units and adds the same reference values
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "--out", str(first), "--json"]) == 0
    assert capsys.readouterr().err.count("complete, skipped") == 2
    again = pd.read_csv(first / "results.csv")
    assert again.loc[again["model"] == REFERENCE_LABEL, "value"].tolist() == ref["value"].tolist()


def test_reference_label_is_reserved(tmp_path: Path) -> None:
    from bench.spec import SpecError, parse_suite

    data = {"name": "s", "seeds": [0], "tracks": [{"name": "t", "primary_metric": "fid", "metrics": ["fid"],
                                                   "datamodules": ["digits"],
                                                   "models": {REFERENCE_LABEL: {"model": "dcgan"}}}]}
    with pytest.raises(SpecError, match="reserved"):
        parse_suite(data, "s.yaml")
