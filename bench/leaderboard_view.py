"""What an HTML leaderboard shows, gathered from a run (suite spec + frames) or from published files.

:class:`LeaderboardView` is the one input of the renderer (:mod:`bench.html_leaderboard`) and of the site's
figures (:mod:`bench.site_plots`), so a page drawn right after ``bench run`` and one rebuilt by ``bench site`` from
``leaderboards/`` look the same. Only pandas and the light :mod:`bench.leaderboard` helpers are imported here: no
torch, so ``bench site`` starts in about a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.leaderboard import order_metrics

#: (track, model label, datamodule): the key of a leaderboard row and of its sample grid.
RowKey = tuple[str, str, str]


@dataclass
class TrackView:
    """One track of a leaderboard.

    Attributes:
        name: The track's name.
        primary_metric: The metric that ranks it.
        metrics: Metrics with a ``<metric>_mean`` column for this track, in reading order.
        higher: Whether higher is better, per metric.
        protocol: The protocol of each metric (split, n, backbone, resize, metric settings), one line each.
        trainer: The trainer settings, as text ("" when unknown).
    """

    name: str
    primary_metric: str
    metrics: list[str]
    higher: dict[str, bool]
    protocol: dict[str, str] = field(default_factory=dict)
    trainer: str = ""

    def arrow(self, metric: str) -> str:
        """``↑`` when higher is better for ``metric``, else ``↓``."""
        return "↑" if self.higher.get(metric, True) else "↓"


@dataclass
class LeaderboardView:
    """A suite's leaderboard as the HTML page shows it.

    Attributes:
        suite: The suite's name.
        description: Its description (Markdown-ish: paragraphs, ``code`` and **bold**).
        reproduce: How to reproduce it: the command, or a report's list of source runs (Markdown-ish).
        environment: One line: git commit, Python, torch, Lightning, platform, threads, CUDA.
        seeds: The suite's seeds.
        table: The aggregated leaderboard (:func:`bench.leaderboard.aggregate`), rows in ranked order.
        results: The long results (:data:`bench.leaderboard.RESULT_COLUMNS`).
        tracks: The tracks in suite order.
        samples: Sample grid (path relative to the page) per row key.
        downloads: (label, relative path) of the data files next to the page.
    """

    suite: str
    description: str
    reproduce: str
    environment: str
    seeds: list[int]
    table: pd.DataFrame
    results: pd.DataFrame
    tracks: list[TrackView]
    samples: dict[RowKey, str] = field(default_factory=dict)
    downloads: list[tuple[str, str]] = field(default_factory=list)

    def rows(self, track: str) -> pd.DataFrame:
        """The leaderboard rows of ``track``, ranked."""
        return self.table[self.table["track"] == track]


def environment_line(env: dict[str, Any]) -> str:
    """The Markdown leaderboard's environment sentence for an ``environment.json`` dict."""
    packages = env.get("packages", {})
    return (f"git `{env.get('git_commit', '?')}`, Python {env.get('python', '?')}, torch {packages.get('torch', '?')}, "
            f"lightning {packages.get('lightning', '?')}, torchmetrics {packages.get('torchmetrics', '?')}, "
            f"{env.get('platform', '?')}, {env.get('cpu_count', '?')} threads, "
            f"CUDA available: {env.get('cuda_available', '?')}.")


def metric_direction(results: pd.DataFrame, metric: str) -> bool:
    """Whether higher is better for ``metric``, as its result rows record it (True when they say nothing)."""
    values = results.loc[results["metric"] == metric, "higher_is_better"].dropna()
    if not len(values):
        return True
    value = values.iloc[0]
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def metric_protocols(results: pd.DataFrame, track: str) -> dict[str, str]:
    """One protocol line per metric of ``track``'s ok rows, as the Markdown leaderboard states them."""
    rows = results[(results["track"] == track) & (results["status"] == "ok")]
    lines: dict[str, str] = {}
    for metric, group in rows.groupby("metric", sort=False):
        first = group.iloc[0]
        detail = [f"split={first['split']}", f"n_real={first['n_real']}"]
        if _present(first.get("n_fake")):
            detail.append(f"n_fake={int(float(first['n_fake']))}")
        if _text(first.get("backbone")):
            detail += [f"backbone={first['backbone']}", f"sha256={str(first['backbone_sha256'])[:16]}…",
                       f"resize={first['resize']}"]
        if _text(first.get("protocol")):
            detail.append(str(first["protocol"]))
        lines[str(metric)] = ", ".join(detail)
    return lines


def track_metrics(table: pd.DataFrame, results: pd.DataFrame, track: str, declared: list[str]) -> list[str]:
    """The metrics shown for ``track``: declared ones first, then any other with values, in reading order."""
    rows = table[table["track"] == track]
    named = list(dict.fromkeys([*declared, *results.loc[results["track"] == track, "metric"].astype(str)]))
    return order_metrics([m for m in named if f"{m}_mean" in rows and rows[f"{m}_mean"].notna().any()])


def build_track(table: pd.DataFrame, results: pd.DataFrame, name: str, primary: str, declared: list[str],
                trainer: str = "") -> TrackView:
    """A :class:`TrackView` of track ``name`` from the leaderboard and results frames."""
    metrics = track_metrics(table, results, name, declared)
    names = list(dict.fromkeys([primary, *metrics]))
    return TrackView(name=name, primary_metric=primary, metrics=metrics,
                     higher={m: metric_direction(results, m) for m in names},
                     protocol=metric_protocols(results, name), trainer=trainer)


def view_from_run(spec: Any, table: pd.DataFrame, results: pd.DataFrame, command: str, env: dict[str, Any],
                  samples: dict[RowKey, str] | None = None) -> LeaderboardView:
    """The view of a leaderboard just written by ``bench run`` / ``bench report``.

    Args:
        spec: The :class:`~bench.spec.SuiteSpec`.
        table: Its aggregated leaderboard.
        results: Its long results.
        command: The command that made it.
        env: The environment dict (``environment.json``).
        samples: Sample grid path (relative to the output folder) per row key.
    """
    tracks = [build_track(table, results, t.name, t.primary_metric, list(t.metrics), str(t.trainer))
              for t in spec.tracks if (table["track"] == t.name).any()]
    return LeaderboardView(
        suite=spec.name, description=spec.description.strip(), reproduce=f"`{command}`",
        environment=environment_line(env), seeds=list(spec.seeds), table=table, results=results, tracks=tracks,
        samples=dict(samples or {}),
        downloads=[("leaderboard.csv", "leaderboard.csv"), ("leaderboard.md", "leaderboard.md"),
                   ("results.csv", "results.csv")],
    )


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""
