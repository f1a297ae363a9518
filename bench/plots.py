"""Figures drawn from results.csv: accuracy against noise level per fusion method.

The data come from the ``robustness`` metric's rows (``acc-noise-<modality>@<level>``) with the clean ``accuracy``
as level 0. Figures are drawn with matplotlib's Agg canvas (no display, no pyplot global state) and saved without
a timestamp or software tag, so the same results give the same bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.atomic import atomic_write
from bench.plot_styles import grouped_styles

_NOISE = re.compile(r"^acc-noise-(?P<modality>.+)@(?P<level>[0-9.eE+-]+)$")
#: Stages drawn with their own line style; other values (e.g. "none" for unimodal baselines) are dash-dotted.
_STAGE_STYLE = {"early": "-", "mid": "--", "late": ":"}
_STAGES = tuple(_STAGE_STYLE)
#: What a noise level is, per modality (see :mod:`bench.corruptions`).
_LEVEL_MEANING = {"image": "Gaussian noise std", "text": "word replacement probability"}
#: Where the runner and the CLI write the figure, next to the leaderboard.
ACCURACY_VS_NOISE_PNG = "accuracy_vs_noise.png"


def model_label(model: str, stage: object) -> str:
    """Legend label of a line: ``"model (stage)"`` for early/mid/late fusion, the bare name otherwise."""
    return f"{model} ({stage})" if isinstance(stage, str) and stage in _STAGES else model


def accuracy_vs_noise_table(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per noise level, mean and sample std over seeds (ok runs only).

    Args:
        results: results.csv as a DataFrame (:data:`bench.leaderboard.RESULT_COLUMNS`).

    Returns:
        One row per (track, datamodule, model, modality, level) with columns ``track, datamodule, model,
        fusion_stage, modality, level, mean, std, n_seeds``; level 0 is the clean ``accuracy``. Only
        (track, datamodule, model) with noise rows appear; empty when there are none.
    """
    columns = ["track", "datamodule", "model", "fusion_stage", "modality", "level", "mean", "std", "n_seeds"]
    ok = results[results["status"] == "ok"]
    parsed = ok["metric"].astype(str).str.extract(_NOISE)
    noisy = ok[parsed["modality"].notna()].assign(modality=parsed["modality"], level=parsed["level"].astype(float))
    if noisy.empty:
        return pd.DataFrame(columns=columns)
    keys = ["track", "datamodule", "model"]
    clean = ok[ok["metric"] == "accuracy"].merge(noisy[keys + ["modality"]].drop_duplicates(), on=keys)
    rows = pd.concat([noisy, clean.assign(level=0.0)], ignore_index=True)
    rows["fusion_stage"] = rows["fusion_stage"].astype(object).fillna("")
    stats = rows.groupby(keys + ["modality", "level"], sort=False).agg(
        fusion_stage=("fusion_stage", "first"), mean=("value", "mean"), std=("value", "std"),
        n_seeds=("seed", "nunique"),
    ).reset_index()
    # models in the order they appear in the results (the suite's order), modalities likewise, levels ascending
    first_seen = {k: i for i, k in enumerate(dict.fromkeys(zip(*(results[c] for c in keys))))}
    modality_rank = {m: i for i, m in enumerate(dict.fromkeys(noisy["modality"]))}
    stats["_run"] = [first_seen[k] for k in zip(*(stats[c] for c in keys))]
    stats["_modality"] = stats["modality"].map(modality_rank)
    stats = stats.sort_values(["_run", "_modality", "level"], kind="stable")
    return stats.reset_index(drop=True)[columns]


def accuracy_vs_noise_figure(results: pd.DataFrame) -> Figure | None:
    """The figure: one row of panels per track (one panel per corrupted modality), x = noise level (0 = clean),
    y = accuracy mean over seeds with sample-std error bars, one line per model (``"model (stage)"``).

    Returns:
        None when ``results`` has no noise rows.
    """
    table = accuracy_vs_noise_table(results)
    if table.empty:
        return None
    tracks = list(dict.fromkeys(results.loc[results["track"].isin(table["track"]), "track"]))
    ncols = max(table.groupby("track")["modality"].nunique())
    fig = Figure(figsize=(5.5 * ncols, 4.2 * len(tracks)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tracks), ncols, squeeze=False)
    several_datamodules = table.groupby("track")["datamodule"].nunique().max() > 1
    for r, track in enumerate(tracks):
        part = table[table["track"] == track]
        modalities = list(dict.fromkeys(part["modality"]))
        lines = list(dict.fromkeys(zip(part["datamodule"], part["model"])))
        stages = [part.loc[(part["datamodule"] == dm) & (part["model"] == m), "fusion_stage"].iloc[0] for dm, m in lines]
        styles = grouped_styles([_STAGE_STYLE.get(stage, "-.") for stage in stages])  # distinct within a line style
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(modalities):
                ax.set_visible(False)
                continue
            modality = modalities[c]
            for i, (dm, model) in enumerate(lines):
                line = part[(part["modality"] == modality) & (part["datamodule"] == dm) & (part["model"] == model)]
                if line.empty:
                    continue
                stage = line["fusion_stage"].iloc[0]
                label = model_label(model, stage) + (f" on {dm}" if several_datamodules else "")
                ax.errorbar(line["level"].to_numpy(float), line["mean"].to_numpy(float),
                            yerr=line["std"].fillna(0.0).to_numpy(float), label=label,
                            color=styles[i].color, linestyle=_STAGE_STYLE.get(stage, "-."),
                            marker=styles[i].marker, markersize=5,
                            capsize=2, linewidth=1.2)
            ax.set_title(f"{track}: {modality} corrupted", fontsize=10)
            ax.set_xlabel(f"{_LEVEL_MEANING.get(modality, 'noise level')} (0 = clean)", fontsize=8)
            ax.set_ylabel("test accuracy (mean ± std over seeds)", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        handles, labels = axes[r][0].get_legend_handles_labels()
        axes[r][min(len(modalities), ncols) - 1].legend(handles, labels, fontsize=7, loc="center left",
                                                        bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_noise(results: pd.DataFrame, out_png: str | Path) -> Path | None:
    """Writes :func:`accuracy_vs_noise_figure` as a PNG (atomically, without metadata that changes between runs).

    Args:
        results: results.csv as a DataFrame.
        out_png: Path of the PNG.

    Returns:
        The path written, or None (nothing written) when ``results`` has no robustness rows.
    """
    fig = accuracy_vs_noise_figure(results)
    if fig is None:
        return None
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_png, lambda f: fig.savefig(f, format="png", metadata={"Software": None},
                                                bbox_inches="tight"), mode="wb")
    return out_png


def has_noise_rows(results: pd.DataFrame) -> bool:
    """Whether ``results`` holds any ok ``acc-noise-*`` row (i.e. a figure would be drawn)."""
    ok = results[results["status"] == "ok"]
    return bool(ok["metric"].astype(str).str.match(_NOISE.pattern).any())
