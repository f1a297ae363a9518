"""bench.plots: the accuracy-vs-noise data (hand-computed means and stds), the figure's lines, deterministic PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.leaderboard import RESULT_COLUMNS, results_frame
from bench.plots import accuracy_vs_noise_figure, accuracy_vs_noise_table, model_label, plot_accuracy_vs_noise

LEVELS = (0.1, 0.5, 1.0)
# model -> (stage, {seed: clean accuracy}); accuracy at a level = clean - slope * level (+ seed offset)
MODELS = {"mid-gated": ("mid", 0.9, 0.2), "late-average": ("late", 0.8, 0.4), "unimodal-text": ("none", 0.4, 0.1)}


def row(model: str, stage: str, seed: int, metric: str, value: float, status: str = "ok",
        track: str = "classification") -> dict[str, Any]:
    base = {c: "" for c in RESULT_COLUMNS}
    return {**base, "suite": "s", "track": track, "family": "fusion", "model": model, "fusion_stage": stage,
            "fusion_operator": model if stage != "none" else "", "datamodule": "captioned-digits", "seed": seed,
            "metric": metric, "value": value, "higher_is_better": True, "status": status, "n_real": 100,
            "n_fake": None, "params": 10, "wall_s": 1.0, "peak_mem_mb": 1.0}


def synthetic_results(with_failed: bool = True) -> pd.DataFrame:
    rows = []
    for model, (stage, clean, slope) in MODELS.items():
        for seed in (0, 1, 2):
            offset = 0.01 * seed
            rows.append(row(model, stage, seed, "accuracy", clean + offset))
            rows.append(row(model, stage, seed, "f1-macro", clean - 0.05))
            for modality, factor in (("image", 1.0), ("text", 2.0)):
                for lvl in LEVELS:
                    rows.append(row(model, stage, seed, f"acc-noise-{modality}@{lvl:g}",
                                    clean - factor * slope * lvl + offset))
                rows.append(row(model, stage, seed, f"acc-drop-{modality}", 0.1))
    if with_failed:  # a failed seed has NaN values and must not enter the means
        rows += [row("mid-gated", "mid", 3, m, float("nan"), status="failed")
                 for m in ("accuracy", "acc-noise-image@0.1")]
    rows += [row("dcgan", "", 0, "fid", 12.0, track="generation")]  # a track without robustness rows
    return results_frame(rows)


def test_model_label() -> None:
    assert model_label("mid-gated", "mid") == "mid-gated (mid)"
    assert model_label("unimodal-text", "none") == "unimodal-text"
    assert model_label("x", float("nan")) == "x"


def test_table_means_and_stds_by_hand() -> None:
    """Level 0 is the clean accuracy; mean and sample std over the ok seeds; models in suite order."""
    table = accuracy_vs_noise_table(synthetic_results())
    assert list(dict.fromkeys(table["model"])) == list(MODELS)
    assert set(table["modality"]) == {"image", "text"} and set(table["track"]) == {"classification"}
    for model, (stage, clean, slope) in MODELS.items():
        for modality, factor in (("image", 1.0), ("text", 2.0)):
            part = table[(table["model"] == model) & (table["modality"] == modality)]
            assert list(part["level"]) == [0.0, *LEVELS]
            expected = [clean - factor * slope * lvl for lvl in (0.0, *LEVELS)]
            np.testing.assert_allclose(part["mean"], np.array(expected) + 0.01, atol=1e-12)  # seed offsets 0, .01, .02
            np.testing.assert_allclose(part["std"], np.std([0, 0.01, 0.02], ddof=1), atol=1e-12)
            assert (part["n_seeds"] == 3).all() and (part["fusion_stage"] == stage).all()


def test_figure_has_one_panel_per_modality_and_one_line_per_model() -> None:
    fig = accuracy_vs_noise_figure(synthetic_results())
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["classification: image corrupted", "classification: text corrupted"]
    for ax, factor in zip(axes, (1.0, 2.0)):
        lines = [c for c in ax.containers]  # one errorbar container per model
        labels = [c.get_label() for c in lines]
        assert labels == ["mid-gated (mid)", "late-average (late)", "unimodal-text"]
        for container, (model, (_, clean, slope)) in zip(lines, MODELS.items()):
            x, y = container.lines[0].get_data()
            np.testing.assert_allclose(x, [0.0, *LEVELS])
            np.testing.assert_allclose(y, [clean - factor * slope * lvl + 0.01 for lvl in (0.0, *LEVELS)])
    assert "Gaussian" in axes[0].get_xlabel() and "replacement" in axes[1].get_xlabel()


def test_png_written_and_deterministic(tmp_path: Path) -> None:
    results = synthetic_results()
    first = plot_accuracy_vs_noise(results, tmp_path / "a" / "accuracy_vs_noise.png")
    second = plot_accuracy_vs_noise(results, tmp_path / "b.png")
    assert first == tmp_path / "a" / "accuracy_vs_noise.png"
    assert first.read_bytes() == second.read_bytes()  # same results, same bytes (no timestamp, no version)
    with Image.open(first) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 100
        assert "Software" not in img.info
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["accuracy_vs_noise.png"]  # no temp file left


def test_no_robustness_rows_no_file(tmp_path: Path) -> None:
    results = synthetic_results()
    plain = results[~results["metric"].str.startswith("acc-")]
    assert accuracy_vs_noise_table(plain).empty
    assert plot_accuracy_vs_noise(plain, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_reads_results_csv_round_trip(tmp_path: Path) -> None:
    """The CLI draws from results.csv read back with pandas (empty strings become NaN): same table."""
    results = synthetic_results()
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    back = accuracy_vs_noise_table(pd.read_csv(path))
    expected = accuracy_vs_noise_table(results)
    pd.testing.assert_frame_equal(back.drop(columns="fusion_stage"), expected.drop(columns="fusion_stage"),
                                  check_dtype=False)
    assert list(back["fusion_stage"]) == list(expected["fusion_stage"])


@pytest.mark.parametrize("n_models", [1, 13])
def test_many_or_one_model(tmp_path: Path, n_models: int) -> None:
    rows = [row(f"m{i}", "mid", 0, metric, 0.5) for i in range(n_models)
            for metric in ("accuracy", "acc-noise-image@0.5")]
    fig = accuracy_vs_noise_figure(results_frame(rows))
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert len(ax.containers) == n_models
    assert np.isnan(accuracy_vs_noise_table(results_frame(rows))["std"]).all()  # one seed: no std, bars of 0
