"""Long-format results → leaderboard tables (mean and std over seeds), written atomically as CSV and Markdown."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.atomic import atomic_write_text
from bench.spec import SuiteSpec

#: Columns of results.csv, in order (one row per model × datamodule × seed × metric).
RESULT_COLUMNS = (
    "suite", "track", "family", "model", "fusion_stage", "fusion_operator", "datamodule", "seed", "metric", "value", "higher_is_better",
    "backbone", "backbone_sha256", "n_real", "n_fake", "resize", "split", "protocol", "params",
    "config_hash", "git_commit", "torch_version", "lightning_version", "timestamp", "wall_s", "peak_mem_mb", "status", "message",
)
_KEYS = ["track", "family", "model", "datamodule"]


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly :data:`RESULT_COLUMNS`."""
    missing = [c for r in rows for c in RESULT_COLUMNS if c not in r]
    if missing:
        raise ValueError(f"result rows lack columns {sorted(set(missing))}")
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def write_results(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Writes results.csv atomically (never leaves a truncated file)."""
    atomic_write_text(path, results_frame(rows).to_csv(index=False, float_format="%.10g"))


def aggregate(results: pd.DataFrame, spec: SuiteSpec) -> pd.DataFrame:
    """One row per (track, model, datamodule): ``<metric>_mean`` / ``<metric>_std`` over seeds.

    Only runs with status ``ok`` enter the means; ``n_seeds`` counts them and ``status`` summarizes all runs
    (e.g. ``ok`` or ``2 ok, 1 diverged``). Rows are ordered by track (suite order), then by the track's primary
    metric in its right direction, missing values last.
    """
    runs = results.drop_duplicates(_KEYS + ["seed"])
    ok = results[results["status"] == "ok"]
    table = runs.groupby(_KEYS, sort=False).agg(
        fusion_stage=("fusion_stage", "first"), fusion_operator=("fusion_operator", "first"),
        params=("params", "first"), wall_s_mean=("wall_s", "mean"), peak_mem_mb_max=("peak_mem_mb", "max"),
    ).reset_index()
    status = runs.groupby(_KEYS, sort=False)["status"].agg(
        lambda s: "ok" if (s == "ok").all() else ", ".join(f"{n} {k}" for k, n in s.value_counts().items())
    ).rename("status").reset_index()
    n_seeds = ok.drop_duplicates(_KEYS + ["seed"]).groupby(_KEYS).size().rename("n_seeds").reset_index()
    table = table.merge(status, on=_KEYS).merge(n_seeds, on=_KEYS, how="left")
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    stats = ok.groupby(_KEYS + ["metric"])["value"].agg(["mean", "std"]).unstack("metric")
    if not stats.empty:
        stats.columns = [f"{metric}_{stat}" for stat, metric in stats.columns]
        table = table.merge(stats.reset_index(), on=_KEYS, how="left")

    ordered = []
    for track in spec.tracks:
        part = table[table["track"] == track.name]
        col = f"{track.primary_metric}_mean"
        if col in part:
            higher = _higher_is_better(results, track.primary_metric)
            part = part.sort_values(col, ascending=not higher, na_position="last", kind="stable")
        ordered.append(part)
    table = pd.concat(ordered, ignore_index=True) if ordered else table
    metric_cols = sorted(c for c in table.columns if c.endswith(("_mean", "_std")) and c != "wall_s_mean")
    return table[_KEYS + ["fusion_stage", "fusion_operator", "params", "n_seeds", "status"] + metric_cols + ["wall_s_mean", "peak_mem_mb_max"]]


def _higher_is_better(results: pd.DataFrame, metric: str) -> bool:
    """The direction recorded in the results (every row carries it), else the registered metric's."""
    values = results.loc[results["metric"] == metric, "higher_is_better"].dropna()
    if len(values):
        return bool(values.iloc[0])
    from bench.metrics import METRICS

    return bool(METRICS.get(metric).higher_is_better) if metric in METRICS else True


def _fmt(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    digits = 4 if abs(mean) < 10 else 2
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(table: pd.DataFrame, results: pd.DataFrame, spec: SuiteSpec, command: str, env: dict[str, Any],
                samples: dict[tuple[str, str, str], str] | None = None) -> str:
    """The leaderboard as Markdown: one table per track, then the protocol and the command that made it.

    Args:
        samples: Relative path of a sample grid (PNG) per (track, model, datamodule), linked from the table.
    """
    samples = samples or {}
    lines = [f"# Leaderboard: suite `{spec.name}`", "", spec.description.strip(), "",
             f"Reproduce with: `{command}`", ""]
    for track in spec.tracks:
        part = table[table["track"] == track.name]
        if part.empty:
            continue
        named = list(dict.fromkeys([*track.metrics, *results.loc[results["track"] == track.name, "metric"]]))
        metrics = [m for m in named if f"{m}_mean" in part]
        arrows = {m: "↑" if _higher_is_better(results, m) else "↓" for m in named}
        lines += [f"## Track `{track.name}` (ranked by {track.primary_metric} {arrows[track.primary_metric]})", ""]
        has_samples = any(key[0] == track.name for key in samples)
        header = ["model", "family", "datamodule", "params", "seeds"] + [f"{m} {arrows[m]}" for m in metrics]
        header += ["wall s", "peak MiB", "status"] + (["samples"] if has_samples else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for _, row in part.iterrows():
            params = "–" if pd.isna(row["params"]) else f"{int(row['params']):,}"
            cells = [row["model"], row["family"], row["datamodule"], params, str(row["n_seeds"])]
            cells += [_fmt(row[f"{m}_mean"], row.get(f"{m}_std")) for m in metrics]
            peak = "–" if pd.isna(row["peak_mem_mb_max"]) else f"{row['peak_mem_mb_max']:.0f}"
            cells += [f"{row['wall_s_mean']:.1f}", peak, row["status"]]
            if has_samples:
                grid = samples.get((track.name, row["model"], row["datamodule"]))
                cells.append(f"[grid]({grid})" if grid else "–")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
        proto = results[(results["track"] == track.name) & (results["status"] == "ok")]
        if not proto.empty:
            lines += ["Protocol:", ""]
            for metric, grp in proto.groupby("metric", sort=False):
                first = grp.iloc[0]
                detail = [f"split={first['split']}", f"n_real={first['n_real']}"]
                if isinstance(first["backbone"], str) and first["backbone"]:
                    detail += [f"n_fake={int(first['n_fake'])}", f"backbone={first['backbone']}",
                               f"sha256={first['backbone_sha256'][:16]}…", f"resize={first['resize']}"]
                if isinstance(first["protocol"], str) and first["protocol"]:
                    detail.append(first["protocol"])
                lines.append(f"- `{metric}`: " + ", ".join(detail))
            lines.append(f"- trainer: {track.trainer}")
            lines.append("")
    lines += [
        "Values are mean ± sample std over seeds "
        f"({', '.join(map(str, spec.seeds))}); each seed trains from scratch and seeds sampling and metric randomness. "
        "`wall s` is the mean wall time of a run (training + scoring); `peak MiB` the largest peak memory over its "
        "seeds (process RSS on CPU, allocated memory on CUDA); sample grids show 64 samples of the first seed's model.",
        "",
        f"Environment: git `{env['git_commit']}`, Python {env['python']}, torch {env['packages']['torch']}, "
        f"lightning {env['packages']['lightning']}, torchmetrics {env['packages']['torchmetrics']}, "
        f"{env['platform']}, {env['cpu_count']} threads, CUDA available: {env['cuda_available']}.",
        "",
    ]
    return "\n".join(lines)


def write_leaderboard(table: pd.DataFrame, markdown: str, out_dir: str | Path, stem: str = "leaderboard") -> tuple[Path, Path]:
    """Writes ``{stem}.csv`` and ``{stem}.md`` atomically; returns their paths."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(md_path, markdown)
    return csv_path, md_path
