"""Long-format results → leaderboard tables (mean and std over seeds), written atomically as CSV and Markdown."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from bench import catalog
from bench.atomic import atomic_write_text
from bench.spec import SuiteSpec

#: Columns of results.csv, in order (one row per model × datamodule × seed × metric).
RESULT_COLUMNS = (
    "suite", "track", "family", "model", "fusion_stage", "fusion_operator", "datamodule", "seed", "metric", "value",
    "value_std", "higher_is_better", "backbone", "backbone_sha256", "n_real", "n_fake", "resize", "split", "protocol", "params",
    "config_hash", "git_commit", "torch_version", "lightning_version", "timestamp", "wall_s", "peak_mem_mb", "status", "message",
)
_KEYS = ["track", "family", "model", "datamodule"]


#: Columns added to results.csv since its first format, with the value of rows written before them.
LATER_COLUMNS: dict[str, Any] = {"fusion_stage": "", "fusion_operator": "", "value_std": math.nan}


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly :data:`RESULT_COLUMNS` (rows of records written before a column in
    :data:`LATER_COLUMNS` existed get its default)."""
    rows = [{**{c: d for c, d in LATER_COLUMNS.items() if c not in r}, **r} for r in rows]
    missing = [c for r in rows for c in RESULT_COLUMNS if c not in r]
    if missing:
        raise ValueError(f"result rows lack columns {sorted(set(missing))}")
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def write_results(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Writes results.csv atomically (never leaves a truncated file)."""
    atomic_write_text(path, results_frame(rows).to_csv(index=False, float_format="%.10g"))


_SEED_RE = re.compile(r"(^|,)seed=\d+")


def protocol_signature(row: Any) -> str:
    """How a result row was scored, as one string: split, sample sizes, backbone (name, sha256 prefix, resize) and
    the metric's own protocol text without its seed (seeds differ between the runs of one model on purpose)."""
    parts = [f"split={row['split']}", f"n_real={_count(row['n_real'])}", f"n_fake={_count(row['n_fake'])}"]
    if isinstance(row["backbone"], str) and row["backbone"]:
        parts += [f"backbone={row['backbone']}", f"sha256={str(row['backbone_sha256'])[:16]}…",
                  f"resize={row['resize']}"]
    if isinstance(row["protocol"], str) and row["protocol"]:
        parts.append(_SEED_RE.sub("", row["protocol"]).lstrip(","))
    return ", ".join(p for p in parts if not p.endswith("=–"))


def _count(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def protocol_notes(results: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """The runs scored under another protocol than most runs of their track, per (track, model, datamodule).

    For each track and metric, the protocol most runs share (the first seen on a tie) is the track's; a run whose
    rows were scored otherwise (e.g. a ``--fast`` run merged into a full one by ``bench report``) gets a note
    ``metric: its protocol`` (several joined by ``; ``). Such rows are marked in the tables, never silently mixed.
    """
    ok = results[results["status"] == "ok"]
    notes: dict[tuple[str, str, str], list[str]] = {}
    for (track, metric), grp in ok.groupby(["track", "metric"], sort=False):
        per_run = {(track, r["model"], r["datamodule"]): protocol_signature(r)
                   for _, r in grp.drop_duplicates(["model", "datamodule"]).iterrows()}
        if len(set(per_run.values())) < 2:
            continue
        counts = pd.Series(list(per_run.values())).value_counts(sort=False)
        usual = counts.index[counts.argmax()]
        for run, signature in per_run.items():
            if signature != usual:
                notes.setdefault(run, []).append(f"{metric}: {signature}")
    return {run: "; ".join(parts) for run, parts in notes.items()}


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
    notes = protocol_notes(results)
    runs_of_rows = zip(table["track"], table["model"], table["datamodule"])
    table["protocol_note"] = [notes.get(run, "") for run in runs_of_rows]
    return table[_KEYS + ["fusion_stage", "fusion_operator", "params", "n_seeds", "status"] + metric_cols
                 + ["wall_s_mean", "peak_mem_mb_max", "protocol_note"]]


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


# ------------------------------------------------------------------------------------------ robustness columns
_DROP = re.compile(r"^acc-drop-(?P<modality>.+)$")
_NOISE = re.compile(r"^acc-noise-(?P<modality>.+)@(?P<level>[0-9.eE+-]+)$")
_RELATIVE = re.compile(r"^relative-robustness-(?P<modality>.+)$")


def is_robustness_metric(metric: str) -> bool:
    """Whether ``metric`` is one of the rows the ``robustness`` metric writes (drop, noise, relative)."""
    return any(p.match(metric) for p in (_DROP, _NOISE, _RELATIVE))


def order_metrics(metrics: list[str]) -> list[str]:
    """Metrics in reading order: the others as given (accuracy, macro-F1, ...), then the robustness rows grouped:
    every ``drop-<modality>``, then per modality its noise levels ascending, then every relative robustness.
    Modalities keep their order of first appearance."""
    modalities: list[str] = []
    for m in metrics:
        match = _DROP.match(m) or _NOISE.match(m) or _RELATIVE.match(m)
        if match and match["modality"] not in modalities:
            modalities.append(match["modality"])

    def key(item: tuple[int, str]) -> tuple:
        i, m = item
        if match := _DROP.match(m):
            return (1, modalities.index(match["modality"]), 0.0, i)
        if match := _NOISE.match(m):
            return (2, modalities.index(match["modality"]), float(match["level"]), i)
        if match := _RELATIVE.match(m):
            return (3, modalities.index(match["modality"]), 0.0, i)
        return (0, 0, 0.0, i)

    return [m for _, m in sorted(enumerate(metrics), key=key)]


def column_label(metric: str) -> str:
    """The Markdown header of a metric: robustness rows get short names (``drop image``, ``image noise 0.25``,
    ``rel. rob. image``); others keep theirs."""
    if match := _DROP.match(metric):
        return f"drop {match['modality']}"
    if match := _NOISE.match(metric):
        return f"{match['modality']} noise {match['level']}"
    if match := _RELATIVE.match(metric):
        return f"rel. rob. {match['modality']}"
    return metric


ROBUSTNESS_LEGEND = (
    "Robustness columns: accuracy on the same test split with one modality changed. `drop M`: modality M removed "
    "(image zeroed, caption all padding); `M noise L`: M corrupted at level L (image: added Gaussian noise of std L, "
    "clipped to [0, 1]; text: each word replaced by a random vocabulary word with probability L); "
    "`rel. rob. M`: mean over the noise levels of accuracy(L) / clean accuracy (1 = unaffected)."
)


def _filled(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _cell(value: Any) -> str:
    return value if _filled(value) else "–"


#: The first line of the closing paragraph of every leaderboard; figures are linked just above it.
FOOTER_START = "Values are mean ± sample std over seeds"


def link_figure(markdown: str, caption: str, rel_path: str) -> str:
    """``markdown`` with the figure ``rel_path`` linked (``![caption](rel_path)``) in a ``## Figures`` section just
    above the closing paragraph; unchanged if that link is already there."""
    link = f"![{caption}]({rel_path})"
    if f"]({rel_path})" in markdown:
        return markdown
    block = f"{link}\n\n" if "## Figures\n" in markdown else f"## Figures\n\n{link}\n\n"
    anchor = markdown.find(FOOTER_START)
    if anchor < 0:
        return markdown.rstrip("\n") + "\n\n" + block
    return markdown[:anchor] + block + markdown[anchor:]


def to_markdown(table: pd.DataFrame, results: pd.DataFrame, spec: SuiteSpec, command: str, env: dict[str, Any],
                samples: dict[tuple[str, str, str], str] | None = None,
                figures: dict[str, str] | None = None) -> str:
    """The leaderboard as Markdown: one table per track, then the protocol and the command that made it.

    A track with fusion models (a non-empty ``fusion_stage`` or ``fusion_operator``) shows ``stage`` and
    ``operator`` columns right after the model; robustness rows are grouped after the other metrics under short
    headers, explained below the table.

    Args:
        samples: Relative path of a sample grid (PNG) per (track, model, datamodule), linked from the table.
        figures: Caption → relative path of figures (PNG) linked in a ``## Figures`` section.
    """
    samples = samples or {}
    lines = [f"# Leaderboard: suite `{spec.name}`", "", spec.description.strip(), "",
             f"Reproduce with: `{command}`", ""]
    for track in spec.tracks:
        part = table[table["track"] == track.name]
        if part.empty:
            continue
        named = list(dict.fromkeys([*track.metrics, *results.loc[results["track"] == track.name, "metric"]]))
        metrics = order_metrics([m for m in named if f"{m}_mean" in part])
        arrows = {m: "↑" if _higher_is_better(results, m) else "↓" for m in named}
        lines += [f"## Track `{track.name}` (ranked by {track.primary_metric} {arrows[track.primary_metric]})", ""]
        has_samples = any(key[0] == track.name for key in samples)
        has_fusion = any(_filled(v) for col in ("fusion_stage", "fusion_operator") if col in part for v in part[col])
        header = ["model"] + (["stage", "operator"] if has_fusion else [])
        header += ["family", "datamodule", "params", "seeds"] + [f"{column_label(m)} {arrows[m]}" for m in metrics]
        header += ["wall s", "peak MiB", "status"] + (["samples"] if has_samples else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for _, row in part.iterrows():
            params = "–" if pd.isna(row["params"]) else f"{int(row['params']):,}"
            cells = [f"{row['model']} †" if row.get("protocol_note") else row["model"]]
            if has_fusion:
                cells += [_cell(row.get("fusion_stage")), _cell(row.get("fusion_operator"))]
            cells += [row["family"], row["datamodule"], params, str(row["n_seeds"])]
            cells += [_fmt(row[f"{m}_mean"], row.get(f"{m}_std")) for m in metrics]
            peak = "–" if pd.isna(row["peak_mem_mb_max"]) else f"{row['peak_mem_mb_max']:.0f}"
            cells += [f"{row['wall_s_mean']:.1f}", peak, row["status"]]
            if has_samples:
                grid = samples.get((track.name, row["model"], row["datamodule"]))
                cells.append(f"[grid]({grid})" if grid else "–")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
        references = part[part["family"] == "reference"]
        if not references.empty:
            split = catalog.reference_split(track.eval.real_split)
            lines += [f"`{references['model'].iloc[0]}` is not a model: {track.eval.n_fake} real images of the "
                      f"`{split}` split (seeded, disjoint from the reference split `{track.eval.real_split}`) scored "
                      "exactly as generated samples are — the best score this protocol gives at this sample size.", ""]
        if any(is_robustness_metric(m) for m in metrics):
            lines += [ROBUSTNESS_LEGEND, ""]
        proto = results[(results["track"] == track.name) & (results["status"] == "ok")]
        odd = {(m, d): note for (t, m, d), note in protocol_notes(proto).items()}
        if not proto.empty:
            lines += ["Protocol:", ""]
            details: dict[str, list[str]] = {}  # one line per distinct protocol, naming every metric that shares it
            for metric, grp in proto.groupby("metric", sort=False):
                usual = grp[[(m, d) not in odd for m, d in zip(grp["model"], grp["datamodule"])]]
                first = (usual if not usual.empty else grp).iloc[0]  # the track's protocol, not an odd run's
                details.setdefault(protocol_signature(first), []).append(metric)
            for detail, names in details.items():
                names = order_metrics(names)
                shown = ", ".join(f"`{n}`" for n in names) if len(names) <= 3 else (
                    f"`{names[0]}` … `{names[-1]}` ({len(names)} rows)")
                lines.append(f"- {shown}: {detail}")
            lines.append(f"- trainer: {track.trainer}")
            for (model, dm), note in odd.items():
                lines.append(f"- † `{model}` on `{dm}` was scored under another protocol — {note}")
            lines.append("")
    for caption, rel_path in (figures or {}).items():
        lines += (["## Figures", ""] if "## Figures" not in lines else []) + [f"![{caption}]({rel_path})", ""]
    lines += [
        f"{FOOTER_START} "
        f"({', '.join(map(str, spec.seeds))}); each seed trains from scratch and seeds sampling and metric randomness. "
        "`wall s` is the mean wall time of a run (training + scoring); `peak MiB` the largest peak memory over its "
        "seeds (process RSS on CPU, allocated memory on CUDA); sample grids show 64 samples of the first seed's model "
        "(text-to-image models: 8 for each of the first 8 distinct captions of the reference split, a row each).",
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
