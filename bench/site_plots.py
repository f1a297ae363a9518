"""The figures of an HTML leaderboard, one set per track, written as PNGs under ``plots/`` next to the page.

- ``<track>-primary.png``: the primary metric per model, mean with sample-std error bars over seeds, best on top.
- ``<track>-precision-recall.png``: precision against recall per generator (when the track has ``prc`` rows).
- ``<track>-cost.png``: the primary metric against parameter count and against wall time per run.
- ``<track>-training.png``: training-loss curves from the Lightning CSV logs
  (``logs/<track>/<model>-<datamodule>/seed<k>/metrics.csv``), mean over the seeds found, when logs are present.

Like :mod:`bench.plots`: matplotlib's Agg canvas (no pyplot state), no timestamp in the file, atomic writes, so the
same numbers give the same bytes. Series use :mod:`bench.plot_styles` so many models stay distinguishable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from bench.atomic import atomic_write
from bench.leaderboard_view import LeaderboardView, TrackView
from bench.plot_styles import distinct_styles

#: Folder of the figures, relative to the page.
PLOTS_DIR = "plots"
#: Loss columns drawn per track (Lightning logs them as ``train_loss``, ``train_loss_d``, ``train_loss_g``, ...).
_MAX_LOSS_PANELS = 3
#: Up to this many points of the cost figure are labelled in place; more get a legend.
_MAX_ANNOTATED = 8
#: Longest label drawn in a figure.
_MAX_LABEL = 32


def save_png(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` as a PNG atomically, without metadata that changes between runs."""
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", metadata={"Software": None}, bbox_inches="tight"),
                 mode="wb")
    return path


def row_labels(rows: pd.DataFrame) -> list[str]:
    """A label per leaderboard row: the model, plus ``on <datamodule>`` when the rows span several; at most
    :data:`_MAX_LABEL` characters (a long label would squash the axes)."""
    several = rows["datamodule"].nunique() > 1
    labels = [f"{m} on {d}" if several else str(m) for m, d in zip(rows["model"], rows["datamodule"])]
    return [label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…" for label in labels]


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _values(rows: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(float) if column in rows else np.full(len(rows), np.nan)


def _seed_note(rows: pd.DataFrame) -> str:
    counts = sorted(set(int(n) for n in rows["n_seeds"].fillna(0)))
    return f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} seeds"


def primary_metric_figure(rows: pd.DataFrame, track: TrackView) -> Figure | None:
    """The track's primary metric per row, mean ± sample std over seeds, in ranked order (best on top).

    Returns:
        None when no row has a value.
    """
    metric = track.primary_metric
    rows = rows[pd.to_numeric(rows.get(f"{metric}_mean"), errors="coerce").notna()] if f"{metric}_mean" in rows else rows[:0]
    if rows.empty:
        return None
    mean, std = _values(rows, f"{metric}_mean"), np.nan_to_num(_values(rows, f"{metric}_std"))
    fig, (ax,) = _new_figure(6.4, 0.8 + 0.32 * len(rows))
    y = np.arange(len(rows))[::-1]
    styles = distinct_styles(len(rows))
    for yi, m, s, style in zip(y, mean, std, styles):
        ax.errorbar([m], [yi], xerr=[s], fmt=style.marker, color=style.color, capsize=3, markersize=6)
    ax.set_yticks(y, row_labels(rows), fontsize=8)
    ax.set_xlabel(f"{metric} {track.arrow(metric)} (mean ± std over {_seed_note(rows)})", fontsize=9)
    ax.set_title(f"{track.name}: {metric}, {'higher' if track.higher.get(metric, True) else 'lower'} is better",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    fig.tight_layout()
    return fig


def precision_recall_figure(rows: pd.DataFrame, track: TrackView) -> Figure | None:
    """Precision against recall (improved precision/recall, ``prc``) per row, with std error bars both ways.

    Returns:
        None when the track has no row with both a precision and a recall.
    """
    if "precision_mean" not in rows or "recall_mean" not in rows:
        return None
    rows = rows[pd.to_numeric(rows["precision_mean"], errors="coerce").notna()
                & pd.to_numeric(rows["recall_mean"], errors="coerce").notna()]
    if rows.empty:
        return None
    fig, (ax,) = _new_figure(6.4, 4.6)
    labels = row_labels(rows)
    p, r = _values(rows, "precision_mean"), _values(rows, "recall_mean")
    p_std, r_std = np.nan_to_num(_values(rows, "precision_std")), np.nan_to_num(_values(rows, "recall_std"))
    for i, style in enumerate(distinct_styles(len(rows))):
        ax.errorbar([r[i]], [p[i]], xerr=[r_std[i]], yerr=[p_std[i]], fmt=style.marker, color=style.color,
                    capsize=2, markersize=7, label=labels[i])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall ↑ (coverage of the real distribution)", fontsize=9)
    ax.set_ylabel("precision ↑ (fidelity of samples)", fontsize=9)
    ax.set_title(f"{track.name}: precision vs recall (mean ± std over {_seed_note(rows)})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def cost_figure(rows: pd.DataFrame, track: TrackView) -> Figure | None:
    """The primary metric against parameters (left) and mean wall time per run (right); log x axes where the
    costs span a decade.

    Returns:
        None when no row has both a value and a cost.
    """
    metric = track.primary_metric
    if f"{metric}_mean" not in rows:
        return None
    score, std = _values(rows, f"{metric}_mean"), np.nan_to_num(_values(rows, f"{metric}_std"))
    costs = [("params", "parameters"), ("wall_s_mean", "wall time per run (s)")]
    usable = [(col, name) for col, name in costs
              if np.any(np.isfinite(score) & (_values(rows, col) > 0))]
    if not usable:
        return None
    fig, axes = _new_figure(4.6 * len(usable), 3.6, len(usable))
    labels, styles = row_labels(rows), distinct_styles(len(rows))
    for ax, (col, name) in zip(axes, usable):
        cost = _values(rows, col)
        for i, style in enumerate(styles):
            if np.isfinite(score[i]) and cost[i] > 0:
                ax.errorbar([cost[i]], [score[i]], yerr=[std[i]], fmt=style.marker, color=style.color,
                            capsize=2, markersize=6, label=labels[i])
                if len(rows) <= _MAX_ANNOTATED:
                    ax.annotate(labels[i], (cost[i], score[i]), xytext=(4, 3), textcoords="offset points", fontsize=6)
        positive = cost[np.isfinite(cost) & (cost > 0)]
        wide = positive.max() >= 10 * positive.min()  # a log axis only where it spans a decade
        if wide:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{name}{' (log scale)' if wide else ''}", fontsize=9)
        ax.set_ylabel(f"{metric} {track.arrow(metric)}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"{track.name}: {metric} against cost", fontsize=10)
    if len(rows) > _MAX_ANNOTATED:  # too many points to label each: a legend instead
        axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def read_training_log(logs_dir: Path, track: str, model: str, datamodule: str) -> pd.DataFrame | None:
    """The step-wise training losses of one row, mean over the seeds whose ``metrics.csv`` exists.

    Returns:
        A frame indexed by step with one column per ``train_loss*`` column, or None without logs.
    """
    frames = []
    for path in sorted((logs_dir / track / f"{model}-{datamodule}").glob("seed*/metrics.csv")):
        try:
            frame = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        columns = [c for c in frame.columns if str(c).startswith("train_loss")]
        if "step" in frame and columns:
            frames.append(frame[["step", *columns]].dropna(how="all", subset=columns))
    if not frames:
        return None
    return pd.concat(frames).groupby("step").mean().sort_index()


def training_figure(rows: pd.DataFrame, track: TrackView, logs_dir: Path) -> Figure | None:
    """Training-loss curves per row (one panel per loss column, smoothed by a running mean).

    Returns:
        None when none of the rows has a log.
    """
    logs = {label: read_training_log(logs_dir, track.name, m, d)
            for label, m, d in zip(row_labels(rows), rows["model"], rows["datamodule"])}
    logs = {k: v for k, v in logs.items() if v is not None and not v.empty}
    if not logs:
        return None
    columns = list(dict.fromkeys(c for frame in logs.values() for c in frame.columns))[:_MAX_LOSS_PANELS]
    fig, axes = _new_figure(5.2 * len(columns), 4.0, len(columns))
    styles = dict(zip(logs, distinct_styles(len(logs))))
    for ax, column in zip(axes, columns):
        for label, frame in logs.items():
            if column not in frame:
                continue
            series = frame[column].dropna()
            window = max(1, len(series) // 25)
            smooth = series.rolling(window, min_periods=1).mean()
            ax.plot(smooth.index.to_numpy(), smooth.to_numpy(), color=styles[label].color, linewidth=1.2,
                    marker=styles[label].marker, markevery=max(1, len(smooth) // 8), markersize=4, label=label)
        ax.set_xlabel("training step", fontsize=9)
        ax.set_ylabel(f"{column} (running mean)", fontsize=9)
        ax.set_title(f"{track.name}: {column}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def write_track_figures(view: LeaderboardView, out_dir: Path, logs_dir: Path | None = None,
                        ) -> dict[str, list[tuple[str, str]]]:
    """Draws every figure of every track into ``out_dir/plots/``.

    Args:
        view: The leaderboard.
        out_dir: The page's folder.
        logs_dir: The run's ``logs/`` folder (None: no training curves).

    Returns:
        Per track, (caption, path relative to ``out_dir``) of each figure written, in page order.
    """
    figures: dict[str, list[tuple[str, str]]] = {}
    for track in view.tracks:
        rows = view.rows(track.name)
        drawn = [
            ("primary", f"{track.primary_metric} per model (mean ± std over seeds)",
             primary_metric_figure(rows, track)),
            ("precision-recall", "precision vs recall", precision_recall_figure(rows, track)),
            ("cost", f"{track.primary_metric} vs parameters and wall time", cost_figure(rows, track)),
            ("training", "training loss", training_figure(rows, track, logs_dir) if logs_dir else None),
        ]
        links = []
        for kind, caption, fig in drawn:
            if fig is not None:
                rel = f"{PLOTS_DIR}/{track.name}-{kind}.png"
                save_png(fig, out_dir / rel)
                links.append((caption, rel))
        figures[track.name] = links
    return figures
