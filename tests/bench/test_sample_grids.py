"""Sample grids saved per run: 8×8 samples, or for text-to-image models one labelled row per caption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.runner import CAPTION_GRID_COLS, CAPTION_GRID_ROWS, _grid_array, caption_rows, save_sample_grid
from datamodules import DATAMODULES
from models import MODELS


def test_caption_grid_has_one_row_per_distinct_caption_generated_from_it(tmp_path: Path) -> None:
    dm = DATAMODULES.get("captioned-digits")()
    dm.setup()
    torch.manual_seed(0)
    model = MODELS.get("mvae-late").from_data(dm.data_spec(), latent_dim=4, width=8, d_model=16).eval()
    rows = caption_rows(dm, "test", CAPTION_GRID_ROWS)
    captions = [dm.caption_strings("test")[i] for i in rows]
    assert len(set(captions)) == CAPTION_GRID_ROWS and rows == sorted(rows)
    assert captions[0] == dm.caption_strings("test")[0]

    path = tmp_path / "grid.png"
    save_sample_grid(model, path, seed=3, dm=dm, split="test")
    grid = np.asarray(Image.open(path).convert("RGB"))
    # the image part equals the model's samples from those captions, caption r in row r, drawn with the seed
    text = dm.split_tensors("test")["text"][rows].repeat_interleave(CAPTION_GRID_COLS, 0)
    expected = _grid_array(model.sample_from_text(text, generator=torch.Generator().manual_seed(3)), CAPTION_GRID_COLS)
    margin = grid.shape[1] - expected.shape[1]
    assert margin > 0 and grid.shape[0] == expected.shape[0]
    assert np.array_equal(grid[:, margin:], expected)
    assert (grid[:, :margin] < 128).any(), "the captions are printed in the left margin"


def test_unconditional_generators_get_an_8x8_grid(tmp_path: Path) -> None:
    dm = DATAMODULES.get("digits")()
    dm.setup()
    torch.manual_seed(0)
    model = MODELS.get("vae").from_data(dm.data_spec(), latent_dim=4, width=8).eval()
    save_sample_grid(model, tmp_path / "grid.png", seed=1, dm=dm)
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    expected = _grid_array(model.sample(64, generator=torch.Generator().manual_seed(1)), 8)
    assert np.array_equal(grid, expected)
