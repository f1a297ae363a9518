"""Reads a published leaderboard back (``bench run --publish DIR`` wrote it) into a :class:`LeaderboardView`.

A published suite ``S`` in ``DIR`` is ``S.csv`` (the aggregated table, ranked) with ``S-results.csv`` (every
result row, all columns); ``S.md`` adds what the CSVs do not hold — the description, the command, the
environment, each track's primary metric and trainer — and ``S-samples/<track>/*.png`` the sample grids. Only
pandas is imported (no torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import InputError
from bench.leaderboard import RESULT_COLUMNS
from bench.leaderboard_view import LeaderboardView, RowKey, build_track

#: Stems of published files that name a suite (the suite-name rule of :mod:`bench.spec`).
SUITE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Track, model and datamodule names that may become a sample grid's path.
_PATH_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TABLE_COLUMNS = ("track", "family", "model", "datamodule", "n_seeds", "status")
_RESULT_NEEDS = ("track", "model", "datamodule", "seed", "metric", "value", "status")
_TEXT_COLUMNS = ("fusion_stage", "fusion_operator", "backbone", "backbone_sha256", "resize", "protocol", "message",
                 "split", "config_hash", "git_commit", "torch_version", "lightning_version")
_TRACK_HEADING = re.compile(r"^## Track `(?P<name>[^`]+)` \(ranked by (?P<metric>\S+)")


class PublishedError(InputError):
    """A published leaderboard folder or file cannot be read; the message names it."""


@dataclass
class MarkdownFacts:
    """What a published leaderboard's Markdown says that its CSVs do not."""

    description: str = ""
    reproduce: str = ""
    environment: str = ""
    primary: dict[str, str] = field(default_factory=dict)
    trainer: dict[str, str] = field(default_factory=dict)


def published_suites(folder: Path) -> list[str]:
    """The suites published in ``folder`` (``S.csv`` with ``S-results.csv``), sorted by name."""
    return sorted(p.stem for p in folder.glob("*.csv")
                  if SUITE_NAME.match(p.stem) and not p.stem.endswith("-results")
                  and (folder / f"{p.stem}-results.csv").is_file())


def parse_markdown(text: str) -> MarkdownFacts:
    """The description, reproduce block, environment and per-track primary metric / trainer of a leaderboard.md."""
    facts = MarkdownFacts()
    description: list[str] = []
    reproduce: list[str] = []
    part, track = "description", None
    for line in text.splitlines():
        if line.startswith("# Leaderboard"):
            continue
        if match := _TRACK_HEADING.match(line):
            part, track = "track", match["name"]
            facts.primary[track] = match["metric"]
            continue
        if line.startswith("## "):
            part = "other"
        elif line.startswith(("Reproduce with:", "Merged by")) and part == "description":
            part = "reproduce"
            line = line.removeprefix("Reproduce with:").strip()
        if line.startswith("Environment: "):
            facts.environment = line.removeprefix("Environment: ").strip()
        elif part == "description":
            description.append(line)
        elif part == "reproduce":
            reproduce.append(line)
        elif part == "track" and track and line.startswith("- trainer: "):
            facts.trainer[track] = line.removeprefix("- trainer: ").strip()
    facts.description = "\n".join(description).strip()
    facts.reproduce = "\n".join(reproduce).strip()
    return facts


def _read_csv(path: Path, needs: tuple[str, ...], what: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise PublishedError(f"{path}: cannot read the {what} ({err})") from err
    missing = [c for c in needs if c not in frame]
    if missing:
        raise PublishedError(f"{path}: not a published {what}, it lacks the columns {missing}")
    return frame


def _strings(column: pd.Series) -> list[str]:
    """A text column as strings, empty where missing (an all-empty column is read as float NaN)."""
    return ["" if isinstance(v, float) and pd.isna(v) else str(v) for v in column]


def read_published_results(path: Path) -> pd.DataFrame:
    """A published ``S-results.csv`` with every :data:`~bench.leaderboard.RESULT_COLUMNS` (older files get the
    columns added since as empty)."""
    frame = _read_csv(path, _RESULT_NEEDS, "results")
    for column in RESULT_COLUMNS:
        if column not in frame:
            frame[column] = "" if column in _TEXT_COLUMNS else float("nan")
    for column in _TEXT_COLUMNS:
        frame[column] = _strings(frame[column])
    for column in ("track", "model", "datamodule", "metric", "status", "family"):
        frame[column] = frame[column].astype(str)
    return frame[list(RESULT_COLUMNS)]


def read_published_table(path: Path) -> pd.DataFrame:
    """A published ``S.csv`` (the aggregated leaderboard, rows in ranked order)."""
    frame = _read_csv(path, _TABLE_COLUMNS, "leaderboard")
    for column in ("track", "family", "model", "datamodule", "status"):
        frame[column] = frame[column].astype(str)
    for column in ("fusion_stage", "fusion_operator"):
        frame[column] = _strings(frame[column]) if column in frame else ""
    frame["n_seeds"] = pd.to_numeric(frame["n_seeds"], errors="coerce").fillna(0).astype(int)
    return frame.reset_index(drop=True)


def sample_sources(folder: Path, suite: str, table: pd.DataFrame) -> dict[RowKey, Path]:
    """The published sample grid of each row (its lowest seed), from ``folder/<suite>-samples/<track>/``."""
    found: dict[RowKey, Path] = {}
    root = folder / f"{suite}-samples"
    for track, model, dm in zip(table["track"], table["model"], table["datamodule"]):
        if not all(_PATH_PART.match(p) for p in (track, model, dm)):
            continue  # a name that could leave the folder is never made into a path
        pattern = re.compile(rf"^{re.escape(model)}-{re.escape(dm)}-seed(\d+)\.png$")
        grids = sorted((int(m.group(1)), p) for p in (root / track).glob("*.png") if (m := pattern.match(p.name)))
        if grids:
            found[(track, model, dm)] = grids[0][1]
    return found


def load_published(folder: Path, suite: str) -> tuple[LeaderboardView, dict[RowKey, Path]]:
    """The view of published suite ``suite`` and the sample grid file of each row (paths in the view's
    ``samples`` are where :mod:`bench.site` copies them: ``samples/<track>/<file>``).

    Raises:
        PublishedError: A CSV cannot be read or is not a published leaderboard / results file.
    """
    table = read_published_table(folder / f"{suite}.csv")
    results = read_published_results(folder / f"{suite}-results.csv")
    md_path = folder / f"{suite}.md"
    facts = parse_markdown(md_path.read_text(encoding="utf-8", errors="replace")) if md_path.is_file() else MarkdownFacts()
    tracks = []
    for name in dict.fromkeys(table["track"]):
        declared = list(dict.fromkeys(results.loc[results["track"] == name, "metric"]))
        primary = facts.primary.get(name) or next(
            (m for m in declared if f"{m}_mean" in table), declared[0] if declared else "")
        tracks.append(build_track(table, results, name, primary, declared, facts.trainer.get(name, "")))
    grids = sample_sources(folder, suite, table)
    view = LeaderboardView(
        suite=suite, description=facts.description, reproduce=facts.reproduce, environment=facts.environment,
        seeds=sorted({int(s) for s in pd.to_numeric(results["seed"], errors="coerce").dropna()}),
        table=table, results=results, tracks=tracks,
        samples={key: f"samples/{key[0]}/{path.name}" for key, path in grids.items()},
        downloads=[("leaderboard.csv", "leaderboard.csv"), ("results.csv", "results.csv")],
    )
    return view, grids
