"""Recognizability of published sample grids: the in-domain classifier judges the 64 tiles of each 8×8 grid.

``bench run`` scores ``recognizable`` and ``class-coverage`` on all of a run's samples when the track asks for
them; this script scores the *grids already published* (``leaderboards/<suite>-samples/``), so a budget change
can be compared with the publication before it without re-running the old budget. The tiles are the exact uint8
images of the grid (``make_grid(nrow=8, padding=2)`` of :func:`bench.runner._grid_array`, stored as lossless PNG),
so the only difference from the suite's metric is the number of samples (64 instead of ``n_fake``): read the
figures with their binomial noise (about ±0.06 on class-coverage at 64 samples).

A ``real data`` line scores 64 real test images drawn with the same seed, the ceiling for the same sample size.

Usage::

    python benchmarks/grid_recognizability.py [GRID.png ...] [--classifier classifier-indomain-fashion]
        [--datamodule fashion-mnist]

Without grids it scores every ``*-seed0.png`` under ``leaderboards/generative-samples/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backbones.registry import BACKBONES  # noqa: E402
from bench.metrics.recognizability import class_coverage, recognizability  # noqa: E402

PADDING = 2


def grid_tiles(path: Path, side: int, nrow: int = 8) -> torch.Tensor:
    """The tiles of a sample grid PNG written by ``bench run``.

    Args:
        path: PNG of ``make_grid(images, nrow, padding=2)``.
        side: Side of one tile in pixels (the dataset's image side).
        nrow: Tiles per grid row.

    Returns:
        (N, 1, side, side) uint8 tiles (the grid's red channel: the grids of grayscale data are gray).
    """
    from PIL import Image

    grid = np.asarray(Image.open(path).convert("RGB"))[..., 0]  # (H', W') uint8
    step = side + PADDING
    rows = (grid.shape[0] - PADDING) // step
    cols = (grid.shape[1] - PADDING) // step
    if rows * step + PADDING != grid.shape[0] or cols != nrow:
        raise ValueError(f"{path}: a {grid.shape[1]}×{grid.shape[0]} grid is not {nrow} tiles of {side} px wide")
    tiles = [grid[PADDING + r * step: PADDING + r * step + side, PADDING + c * step: PADDING + c * step + side]
             for r in range(rows) for c in range(cols)]
    return torch.from_numpy(np.stack(tiles)).unsqueeze(1)  # (N, 1, side, side)


def real_images(datamodule: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real test images (uint8, (n, C, H, W)) drawn with ``seed`` and all test labels (N,)."""
    from datamodules.registry import DATAMODULES

    test = DATAMODULES.get(datamodule)().split_tensors("test")
    labels = test["label"].long()  # (N,)
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    images = test["image"][pick]  # (n, C, H, W) in [0, 1]
    return images.mul(255).round().to(torch.uint8), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", nargs="*", type=Path)
    parser.add_argument("--classifier", default="classifier-indomain-fashion")
    parser.add_argument("--datamodule", default="fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grids = args.grids or sorted((ROOT / "leaderboards" / "generative-samples").glob("*/*-seed0.png"))
    torch.set_num_threads(1)
    classifier = BACKBONES.get(args.classifier)()
    real, labels = real_images(args.datamodule, 64, args.seed)
    side = real.shape[-1]
    print(f"{'grid':<30} {'n':>3} {'recognizable':>12} {'class-coverage':>14}")
    for name, images in [("real data (64 test images)", real)] + [
            (p.stem, grid_tiles(p, side)) for p in grids]:
        logits = classifier.classify(images)  # (64, K)
        mean, _ = recognizability(logits)
        coverage = class_coverage(logits, labels)
        print(f"{name:<30} {len(images):>3} {float(mean):>12.3f} {float(coverage):>14.3f}")


if __name__ == "__main__":
    main()
