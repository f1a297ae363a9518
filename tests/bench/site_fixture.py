"""A small, realistic suite run for the HTML tests: fabricated result rows (two tracks, three seeds, a hostile model
label), written as ``bench run`` writes them (results.csv, leaderboard.csv / .md / .html, sample grids, Lightning
logs, the accuracy-vs-noise figure) and published as ``bench run --publish`` does.

Used by tests/bench/test_html.py (no browser) and tests/browser/test_site_browser.py (headless Chromium).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from bench.leaderboard import RESULT_COLUMNS, aggregate, results_frame, to_markdown, write_leaderboard, write_results
from bench.spec import SuiteSpec, TrackSpec

#: A label that would run script if it reached the page unescaped (it sets window.__pwned).
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
SEEDS = (0, 1, 2)
GENERATORS = {"dcgan": ("gan", 40.0, 0.62, 0.31), "vae": ("vae", 55.0, 0.48, 0.52), HOSTILE: ("gan", 90.0, 0.2, 0.1)}
CLASSIFIERS = {"early-concat": ("early", 0.91), "late-average": ("late", 0.86), "unimodal-image": ("unimodal", 0.78)}
FID_PROTOCOL = "float64 moments,unbiased covariance,trace sqrt via cholesky+eigvalsh,backbone_version=2"
PRC_PROTOCOL = "k=3,feature space of the backbone"

SPEC = SuiteSpec(
    name="demo",
    description="A fabricated suite for the HTML tests. Generation: two GANs and a VAE on `digits`; fusion: early "
                "and late fusion with a **unimodal** baseline.",
    seeds=SEEDS,
    tracks=(
        # metrics named as their result rows (not "prc", "robustness"): no lookup in the registry, which imports torch
        TrackSpec(name="generation", primary_metric="fid", metrics=("fid", "precision", "recall"),
                  datamodules={"digits": {}}, models={m: {} for m in GENERATORS}),
        TrackSpec(name="fusion", primary_metric="accuracy", metrics=("accuracy",),
                  datamodules={"captioned-digits": {}}, models={m: {} for m in CLASSIFIERS}),
    ),
    source="demo.yaml",
)
ENV = {"git_commit": "0123456789abcdef" * 2 + "01234567", "python": "3.11.7",
       "packages": {"torch": "2.x", "lightning": "2.x", "torchmetrics": "1.x"}, "platform": "Linux-test",
       "cpu_count": 2, "cuda_available": False}
COMMAND = "bench run --suite demo --publish leaderboards"


def _row(track: str, family: str, model: str, dm: str, seed: int, metric: str, value: float, higher: bool,
         **extra: Any) -> dict[str, Any]:
    features = metric in ("fid", "precision", "recall")
    row = {c: "" for c in RESULT_COLUMNS}
    row.update({
        "suite": SPEC.name, "track": track, "family": family, "model": model, "datamodule": dm, "seed": seed,
        "metric": metric, "value": value, "higher_is_better": higher, "split": "test", "n_real": 359,
        "n_fake": 359 if features else None, "backbone": "efficientnet-lite0" if features else "",
        "backbone_sha256": "57" * 32 if features else "", "resize": "bilinear-128" if features else "",
        "protocol": FID_PROTOCOL if metric == "fid" else PRC_PROTOCOL if features else "top1,micro",
        "params": 100_000 + 1000 * len(model), "config_hash": f"cfg{len(model):04d}", "git_commit": ENV["git_commit"],
        "torch_version": "2.x", "lightning_version": "2.x", "timestamp": "2026-01-01T00:00:00+00:00",
        "wall_s": 5.0 + seed + len(model) / 10, "peak_mem_mb": 1400.0, "status": "ok", "message": "",
    })
    row.update(extra)
    return row


def fabricated_results() -> pd.DataFrame:
    """Realistic results: 3 generators (FID, precision, recall) and 3 classifiers (accuracy, noise rows) × 3 seeds."""
    rng = np.random.default_rng(0)
    rows = []
    for model, (family, fid, precision, recall) in GENERATORS.items():
        for seed in SEEDS:
            rows += [_row("generation", family, model, "digits", seed, "fid", fid + rng.normal(0, 2), False),
                     _row("generation", family, model, "digits", seed, "precision", precision + rng.normal(0, .02), True),
                     _row("generation", family, model, "digits", seed, "recall", recall + rng.normal(0, .02), True)]
    for model, (stage, accuracy) in CLASSIFIERS.items():
        extra = {"fusion_stage": stage, "fusion_operator": "" if stage == "unimodal" else model}
        for seed in SEEDS:
            clean = accuracy + rng.normal(0, 0.01)
            rows.append(_row("fusion", "fusion", model, "captioned-digits", seed, "accuracy", clean, True, **extra))
            for level in (0.1, 0.5, 1.0):
                rows.append(_row("fusion", "fusion", model, "captioned-digits", seed, f"acc-noise-image@{level:g}",
                                 clean * (1 - 0.5 * level), True, **extra))
    return results_frame(rows)


def _grid(path: Path, seed: int) -> None:
    """An 8×8 grid of 16 px 'samples' with 2 px gaps (146 × 146, like the quick suite's)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (146, 146), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "L").save(path)


def _log(path: Path, seed: int, gan: bool) -> None:
    steps = np.arange(30)
    columns = {"train_loss_d": 1.4 - 0.01 * steps, "train_loss_g": 0.7 + 0.005 * steps} if gan else {
        "train_loss": 45 - 0.5 * steps + seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"epoch": steps // 10, "step": steps, **columns}).to_csv(path, index=False)


def write_run(out: Path) -> Path:
    """Writes the fabricated suite's run folder (as ``bench run --out out`` would); returns leaderboard.html."""
    from bench.html_leaderboard import write_html_leaderboard
    from bench.plots import ACCURACY_VS_NOISE_PNG, plot_accuracy_vs_noise

    results = fabricated_results()
    out.mkdir(parents=True, exist_ok=True)
    grids = {}
    for model, (family, *_) in GENERATORS.items():
        if model != HOSTILE:  # a label that is not a safe name never becomes a path
            grids[("generation", model, "digits")] = f"samples/generation/{model}-digits-seed0.png"
            for seed in SEEDS:
                _grid(out / "samples" / "generation" / f"{model}-digits-seed{seed}.png", seed)
                _log(out / "logs" / "generation" / f"{model}-digits" / f"seed{seed}" / "metrics.csv", seed,
                     family == "gan")
    write_results(results.to_dict("records"), out / "results.csv")
    table = aggregate(results, SPEC)
    plot_accuracy_vs_noise(results, out / ACCURACY_VS_NOISE_PNG)  # as bench.runner.noise_figure does
    figures = {"demo: accuracy against noise level": ACCURACY_VS_NOISE_PNG}
    markdown = to_markdown(table, results, SPEC, COMMAND, ENV, grids, figures)
    write_leaderboard(table, markdown, out)
    return write_html_leaderboard(out, SPEC, table, results, COMMAND, ENV, grids)


def write_published(folder: Path) -> Path:
    """Runs :func:`write_run` into ``folder/run`` and publishes it into ``folder/published``; returns the latter."""
    from bench.cli import publish

    run = folder / "run"
    write_run(run)
    published = folder / "published"
    publish(published, SPEC.name, run / "leaderboard.csv", run / "leaderboard.md", run / "results.csv")
    return published


def expected_rows(table_csv: Path) -> dict[str, int]:
    """Rows per track of a leaderboard CSV (what each page's table must show)."""
    table = pd.read_csv(table_csv)
    return {str(k): int(v) for k, v in table.groupby("track", sort=False).size().items()}
