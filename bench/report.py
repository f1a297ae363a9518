"""Rebuilds a suite's leaderboard from several ``results.csv`` files: a suite run plus later runs of some of its
models (``bench run --models ...``), so that adding a model to a published leaderboard does not mean training
every other model again.

Runs are merged per (track, model, datamodule): when several files hold the same one, the file given last wins
for all of its seeds, so a re-run replaces the old numbers instead of mixing with them. Every row keeps its own
provenance (git commit, versions, timestamp), and the Markdown lists the source files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.atomic import atomic_copy
from bench.catalog import REFERENCE_LABEL
from bench.html_leaderboard import write_html_leaderboard
from bench.leaderboard import LATER_COLUMNS, RESULT_COLUMNS, aggregate, to_markdown, write_leaderboard, write_results
from bench.provenance import environment_info
from bench.runner import noise_figure
from bench.spec import SpecError, SuiteSpec

_RUN_KEY = ["track", "model", "datamodule"]
#: Columns added after the first published results; older files get them empty.
_LATER_COLUMNS = LATER_COLUMNS
_TEXT_COLUMNS = ("fusion_stage", "fusion_operator", "backbone", "backbone_sha256", "resize", "protocol", "message")


def read_results(path: str | Path) -> pd.DataFrame:
    """One results.csv as a frame with exactly :data:`~bench.leaderboard.RESULT_COLUMNS`.

    Raises:
        SpecError: If the file cannot be read or lacks columns (other than those added since it was written).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SpecError(f"{path}: cannot read results ({err})") from err
    for column, default in _LATER_COLUMNS.items():
        if column not in frame:
            frame[column] = default
    missing = [c for c in RESULT_COLUMNS if c not in frame]
    if missing:
        raise SpecError(f"{path}: not a results.csv, it lacks the columns {missing}")
    for column in _TEXT_COLUMNS:
        frame[column] = frame[column].astype(object).fillna("").astype(str)  # an all-empty column reads as float
    return frame[list(RESULT_COLUMNS)]


def merge_results(frames: list[pd.DataFrame], spec: SuiteSpec, sources: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """Merges results of one suite; later frames replace earlier ones per (track, model, datamodule).

    Args:
        frames: Results frames (see :func:`read_results`), oldest first.
        spec: The suite they belong to; rows of tracks or models it does not list are refused.
        sources: A name per frame for error messages.

    Returns:
        The merged frame, and for each of its rows the index of the frame it came from.

    Raises:
        SpecError: If a frame is of another suite, or holds a track or model the suite does not list.
    """
    known = {(t.name, m) for t in spec.tracks for m in [*t.models, REFERENCE_LABEL]}
    kept: list[pd.DataFrame] = []
    for i, (frame, source) in enumerate(zip(frames, sources)):
        suites = sorted(set(frame["suite"]))
        if suites != [spec.name]:
            raise SpecError(f"{source}: results of suite(s) {suites}, not of suite {spec.name!r}")
        unknown = sorted({(t, m) for t, m in zip(frame["track"], frame["model"])} - known)
        if unknown:
            raise SpecError(f"{source}: track/model {unknown[0]} is not in suite {spec.name!r} (its file: {spec.source})")
        keys = set(map(tuple, frame[_RUN_KEY].values.tolist()))
        kept = [k[~k[_RUN_KEY].apply(tuple, axis=1).isin(keys)] for k in kept]
        kept.append(frame.assign(_source=i))
    merged = pd.concat(kept, ignore_index=True)
    origin = merged.pop("_source").astype(int).tolist()
    return merged, origin


def report(spec: SuiteSpec, results: list[Path], out_dir: Path, command: str) -> tuple[Path, Path, Path]:
    """Writes the merged results.csv, leaderboard.csv and leaderboard.md of ``spec`` into ``out_dir``.

    Sample grids are copied from each source's ``samples/`` folder for the runs taken from it; the environment
    shown is that of the last source (its ``environment.json``), or this machine's if it has none.

    Returns:
        Paths of results.csv, leaderboard.csv and leaderboard.md.
    """
    frames = [read_results(p) for p in results]
    merged, origin = merge_results(frames, spec, [str(p) for p in results])
    out_dir.mkdir(parents=True, exist_ok=True)
    grids: dict[tuple[str, str, str], str] = {}
    for (track, model, dm), src in sorted({(tuple(k), o) for k, o in zip(merged[_RUN_KEY].values.tolist(), origin)}):
        for seed in spec.seeds:
            rel = f"samples/{track}/{model}-{dm}-seed{seed}.png"
            source = results[src].parent / rel
            if source.exists():
                if source.resolve() != (out_dir / rel).resolve():
                    atomic_copy(source, out_dir / rel)
                grids[(track, model, dm)] = rel
                break
    env_file = results[-1].parent / "environment.json"
    env = json.loads(env_file.read_text()) if env_file.exists() else environment_info("cpu", 1)
    results_csv = out_dir / "results.csv"
    write_results(merged.to_dict("records"), results_csv)
    table = aggregate(merged, spec)
    markdown = to_markdown(table, merged, spec, command, env, grids, noise_figure(merged, out_dir))
    lines = [f"Merged by `{command}`; later runs replace earlier runs of the same model. Reproduce with the runs:"]
    for i, path in enumerate(results):
        models = sorted(set(merged.loc[[o == i for o in origin], "model"]))
        lines.append(f"- `{_run_command(path)}`: {', '.join(models) if models else 'all replaced'}")
    markdown = markdown.replace(f"Reproduce with: `{command}`", "\n".join(lines), 1)
    lb_csv, lb_md = write_leaderboard(table, markdown, out_dir)
    write_html_leaderboard(out_dir, spec, table, merged, command, env, grids, reproduce="\n".join(lines))
    return results_csv, lb_csv, lb_md


def _run_command(results_csv: Path) -> str:
    """The ``bench run`` command recorded in the leaderboard.md next to ``results_csv`` (its path if none)."""
    md = results_csv.parent / "leaderboard.md"
    if md.exists():
        for line in md.read_text().splitlines():
            if line.startswith("Reproduce with: `"):
                return line.removeprefix("Reproduce with: `").rstrip("`")
    return str(results_csv)
