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


def test_generative_tracks_get_a_reference_row(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    data = {
        "name": "reference", "seeds": [0, 1],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1},
        "eval": {"backbone_size": 32, "n_fake": 32, "batch_size": 32, "kid_subsets": 4, "kid_subset_size": 16},
        "tracks": [{"name": "gen", "primary_metric": "kid", "metrics": ["kid", "mse"],
                    "datamodules": {"digits": {"image_size": 8}},
                    "models": {"vae": {"latent_dim": 4, "width": 8}}}],
    }
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--json"]) == 0
    results = pd.read_csv(out / "results.csv")
    ref = results[results["model"] == REFERENCE_LABEL]
    assert list(ref["metric"]) == ["kid", "kid"] and (ref["family"] == "reference").all()  # no mse: nothing to rebuild
    assert (ref["status"] == "ok").all() and (ref["n_fake"] == 32).all() and sorted(ref["seed"]) == [0, 1]
    vae = results[(results["model"] == "vae") & (results["metric"] == "kid")]
    assert ref["value"].mean() < vae["value"].mean()  # real images beat a 2-batch VAE
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["model"]) == [REFERENCE_LABEL, "vae"]  # ranked first: the floor
    text = (out / "leaderboard.md").read_text()
    assert "is not a model: 32 real images of the `train` split" in text
    assert not (out / "weights" / "gen" / "real-data-digits-seed0.pt").exists()

    # the flag is not in any key: the vae units stay complete and are not trained again
    data["eval"]["reference"] = False
    suite.write_text(yaml.safe_dump(data))
    assert main(["run", "--suite", str(suite), "--out", str(out), "--json"]) == 0
    again = pd.read_csv(out / "results.csv")
    assert again.loc[again["model"] == "vae", "value"].tolist() == results.loc[results["model"] == "vae", "value"].tolist()
