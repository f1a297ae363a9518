"""Leaderboards as self-contained HTML pages: ``leaderboard.html`` next to ``leaderboard.csv`` / ``.md``.

A page holds one sortable table per track (click a header; the sorter is inline, see :mod:`bench.html_assets`),
every metric as mean ± sample std with the seed count, each row's protocol on hover (the ``title`` of the row and of
each value) and per track in an expandable ``<details>``, the suite's description, command and environment, the
figures of :mod:`bench.site_plots` and the sample grids at a readable size.

Images are **relative links**, not ``data:`` URIs: the PNGs already sit next to the page (``samples/…``,
``accuracy_vs_noise.png``, ``plots/…``), so inlining them would store every grid twice and make the HTML ~1.33×
their size (base64) and impossible to diff. The page is shared with its folder (``bench site`` copies everything a
page links into the site folder, which can be uploaded or zipped as is). CSS and JS are inline (no CDN), and
every text from a results file is HTML-escaped, so a model label like ``<script>`` shows as text.

Plain string building with :func:`html.escape` (no template engine: jinja2 is only installed as a torch dependency,
and explicit escaping of every value is easy to check here).
"""

from __future__ import annotations

import html
import math
import re
import struct
import urllib.parse
from pathlib import Path
from typing import Any

import pandas as pd

from bench.atomic import atomic_write_text
from bench.html_assets import CSS, JS
from bench.leaderboard import ROBUSTNESS_LEGEND, column_label, is_robustness_metric
from bench.leaderboard_view import LeaderboardView, RowKey, TrackView, view_from_run

#: The page written next to leaderboard.csv / .md.
LEADERBOARD_HTML = "leaderboard.html"
#: Sample grids are upscaled by a whole factor (crisp pixels) until their shorter side is at least this many px.
GRID_MIN_PX = 256
GRID_MAX_PX = 800


def esc(value: Any) -> str:
    """``value`` as HTML text, safe inside elements and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def href(rel: str) -> str:
    """A relative path as an escaped URL (spaces, ``#``, ``?`` and quotes cannot break out of it)."""
    return esc(urllib.parse.quote(rel, safe="/"))


def inline_markdown(text: str) -> str:
    """The Markdown the leaderboards use in prose (```code```, ``**bold**``) as escaped HTML, one line."""
    out = esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def markdown_blocks(text: str) -> str:
    """Paragraphs (blank-line separated) and ``- `` bullet lists of Markdown-ish prose as HTML."""
    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        items = [line for line in lines if line.lstrip().startswith("- ")]
        prose = [line for line in lines if not line.lstrip().startswith("- ")]
        if prose:
            parts.append(f"<p>{inline_markdown(' '.join(prose))}</p>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{inline_markdown(i.lstrip()[2:])}</li>" for i in items) + "</ul>")
    return "\n".join(parts)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def format_mean_std(mean: Any, std: Any) -> str:
    """``mean ± std`` as the Markdown shows it (4 decimals below 10, else 2); ``–`` without a mean."""
    m, s = _number(mean), _number(std)
    if m is None:
        return "–"
    digits = 4 if abs(m) < 10 else 2
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None when ``path`` is not a readable PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def grid_width(size: tuple[int, int] | None) -> int:
    """The displayed width of a grid: its width times the smallest whole factor making its short side ≥ 256 px,
    unless that makes it wider than 800 px (wide grids, e.g. with captions, get the largest factor that fits)."""
    if size is None or min(size) <= 0:
        return GRID_MIN_PX
    factor = min(math.ceil(GRID_MIN_PX / min(size)), max(1, GRID_MAX_PX // size[0]))
    return size[0] * max(1, factor)


# ------------------------------------------------------------------------------------------------------- tables
def _has_fusion(rows: pd.DataFrame) -> bool:
    return any(isinstance(v, str) and v.strip() for c in ("fusion_stage", "fusion_operator") if c in rows
               for v in rows[c])


def row_protocol(view: LeaderboardView, track: TrackView, row: pd.Series) -> str:
    """The hover text of a row: seeds, config hash, code and library versions, then each metric's protocol."""
    runs = view.results[(view.results["track"] == track.name) & (view.results["model"] == row["model"])
                        & (view.results["datamodule"] == row["datamodule"])]
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    first = runs.iloc[0] if len(runs) else {}
    lines = [f"{row['model']} on {row['datamodule']}: seeds {', '.join(map(str, seeds)) or '–'}"
             f" ({int(row['n_seeds'])} ok), status {row['status']}"]
    if len(runs):
        lines.append(f"config {first['config_hash']}, git {str(first['git_commit'])[:12]}, torch "
                     f"{first['torch_version']}, lightning {first['lightning_version']}")
    note = row.get("protocol_note")
    if isinstance(note, str) and note:
        lines.append(f"† scored under another protocol than the rest of the track: {note}")
    lines += [f"{m}: {track.protocol[m]}" for m in track.metrics if m in track.protocol]
    if track.trainer:
        lines.append(f"trainer: {track.trainer}")
    return "\n".join(lines)


def _best_rows(rows: pd.DataFrame, track: TrackView) -> dict[str, Any]:
    """Per metric, the index of the model row with the best mean (the ``reference`` row of real images is not a
    model: it is never highlighted)."""
    best = {}
    models = rows[rows["family"] != "reference"] if "family" in rows else rows
    for metric in track.metrics:
        values = pd.to_numeric(models[f"{metric}_mean"], errors="coerce").dropna()
        if len(values) > 1:
            best[metric] = values.idxmax() if track.higher.get(metric, True) else values.idxmin()
    return best


def _th(label: str, first: str = "ascending", title: str = "", cls: str = "", sort: str = "") -> str:
    attrs = f' data-first="{first}"' + (f' title="{esc(title)}"' if title else "") + (f' class="{cls}"' if cls else "")
    attrs += f' aria-sort="{sort}"' if sort else ""
    return f"<th scope=\"col\"{attrs}>{esc(label)}</th>"


def _td(text: str, sort: Any = None, cls: str = "", title: str = "", raw: bool = False) -> str:
    attrs = "" if sort is None else f' data-sort="{esc(sort)}"'
    attrs += (f' class="{cls}"' if cls else "") + (f' title="{esc(title)}"' if title else "")
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def _anchor(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)


def render_table(view: LeaderboardView, track: TrackView) -> str:
    """The sortable table of one track, rows in ranked order."""
    rows = view.rows(track.name)
    fusion, samples = _has_fusion(rows), any(k[0] == track.name for k in view.samples)
    primary_sort = "descending" if track.higher.get(track.primary_metric, True) else "ascending"
    head = [_th("#", title="rank by the primary metric"), _th("model")]
    head += [_th("stage"), _th("operator")] if fusion else []
    head += [_th("family"), _th("datamodule"), _th("params"), _th("seeds", "descending", "ok seeds in the means")]
    for m in track.metrics:
        is_primary = m == track.primary_metric
        head.append(_th(f"{column_label(m)} {track.arrow(m)}", "descending" if track.higher.get(m, True) else "ascending",
                        f"{m}: {track.protocol.get(m, '')}", "primary" if is_primary else "",
                        primary_sort if is_primary else ""))
    head += [_th("wall s", title="mean wall time of a run"), _th("peak MiB", title="largest peak memory"),
             _th("status")] + ([_th("samples")] if samples else [])
    best = _best_rows(rows, track)
    body = []
    for rank, (index, row) in enumerate(rows.iterrows(), 1):
        key: RowKey = (track.name, str(row["model"]), str(row["datamodule"]))
        params = _number(row.get("params"))
        note = row.get("protocol_note")
        odd = isinstance(note, str) and bool(note)  # scored under another protocol (bench.leaderboard.protocol_notes)
        cells = [_td(str(rank), rank, "num"), _td(f"{row['model']} †" if odd else row["model"], str(row["model"]))]
        if fusion:
            cells += [_td(_text(row.get("fusion_stage"))), _td(_text(row.get("fusion_operator")))]
        cells += [_td(row["family"]), _td(row["datamodule"]),
                  _td("–" if params is None else f"{int(params):,}", params, "num"),
                  _td(str(int(row["n_seeds"])), int(row["n_seeds"]), "num")]
        for m in track.metrics:
            mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
            shown = format_mean_std(mean, std)
            tip = (f"{m} = {shown}: mean ± sample std over {int(row['n_seeds'])} seeds" if shown != "–" else "")
            cls = "num best" if best.get(m) == index else "num"
            cells.append(_td(shown, _number(mean), cls, tip))
        wall, peak = _number(row.get("wall_s_mean")), _number(row.get("peak_mem_mb_max"))
        cells += [_td("–" if wall is None else f"{wall:.1f}", wall, "num"),
                  _td("–" if peak is None else f"{peak:.0f}", peak, "num"),
                  _td(row["status"], cls="" if row["status"] == "ok" else "status-bad")]
        if samples:
            link = (f'<a href="#{_anchor("samples", *key)}">grid</a>' if key in view.samples else "–")
            cells.append(_td(link, raw=True))
        body.append(f'<tr title="{esc(row_protocol(view, track, row))}">{"".join(cells)}</tr>')
    return (f'<div class="table-wrap"><table class="sortable" id="{_anchor("table", track.name)}">'
            f'<thead><tr>{"".join(head)}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table></div>")


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value.strip() else "–"


def render_protocol(track: TrackView) -> str:
    """The track's protocol, one line per metric (metrics sharing a protocol share a line), in a ``<details>``."""
    shared: dict[str, list[str]] = {}
    for metric in track.metrics:
        if metric in track.protocol:
            shared.setdefault(track.protocol[metric], []).append(metric)
    items = []
    for text, names in shared.items():
        shown = ", ".join(f"<code>{esc(n)}</code>" for n in names) if len(names) <= 3 else (
            f"<code>{esc(names[0])}</code> … <code>{esc(names[-1])}</code> ({len(names)} metrics)")
        items.append(f"<li>{shown}: {esc(text)}</li>")
    if track.trainer:
        items.append(f"<li>trainer: <code>{esc(track.trainer)}</code></li>")
    return f"<details><summary>Protocol</summary><ul>{''.join(items)}</ul></details>" if items else ""


def render_figures(figures: list[tuple[str, str]]) -> str:
    """Figures (caption, relative PNG path) side by side."""
    if not figures:
        return ""
    items = "".join(f'<figure class="plot"><a href="{href(rel)}"><img src="{href(rel)}" alt="{esc(caption)}">'
                    f'</a><figcaption>{esc(caption)}</figcaption></figure>' for caption, rel in figures)
    return f'<div class="figures">{items}</div>'


def render_samples(view: LeaderboardView, track: TrackView, out_dir: Path) -> str:
    """The track's sample grids, upscaled by whole factors with crisp pixels, each with an anchor the table links."""
    items = []
    for _, row in view.rows(track.name).iterrows():
        key: RowKey = (track.name, str(row["model"]), str(row["datamodule"]))
        rel = view.samples.get(key)
        if rel is None:
            continue
        size = png_size(out_dir / rel)
        width = grid_width(size)
        height = f' height="{round(width * size[1] / size[0])}"' if size else ""
        items.append(f'<figure class="grid" id="{_anchor("samples", *key)}"><a href="{href(rel)}">'
                     f'<img src="{href(rel)}" width="{width}"{height} alt="samples of {esc(key[1])}"></a>'
                     f'<figcaption>{esc(key[1])} on {esc(key[2])} (first seed)</figcaption></figure>')
    return f'<h3>Samples</h3><div class="figures">{"".join(items)}</div>' if items else ""


# -------------------------------------------------------------------------------------------------------- pages
def page(title: str, body: str) -> str:
    """A complete HTML document with the inline CSS and sorter."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{JS}</script>\n</body>\n</html>\n")


def render_leaderboard(view: LeaderboardView, out_dir: Path, figures: dict[str, list[tuple[str, str]]] | None = None,
                       suite_figures: list[tuple[str, str]] | None = None, back: str | None = None) -> str:
    """The whole page of one suite.

    Args:
        view: The leaderboard.
        out_dir: The page's folder (sample grid sizes are read from there).
        figures: Per track, (caption, relative path) of its figures.
        suite_figures: Figures over all tracks (the accuracy-vs-noise figure).
        back: Relative link to an index page, shown above the title (None: none).
    """
    figures = figures or {}
    parts = [f'<p><a href="{href(back)}">← all leaderboards</a></p>'] if back else []
    parts += [f"<header><h1>Leaderboard: suite <code>{esc(view.suite)}</code></h1>",
              markdown_blocks(view.description), '<div class="meta">',
              f"<p><strong>Reproduce with:</strong></p>{markdown_blocks(view.reproduce)}",
              f"<p><strong>Environment:</strong> {inline_markdown(view.environment)}</p>"]
    if view.downloads:
        links = ", ".join(f'<a href="{href(rel)}">{esc(label)}</a>' for label, rel in view.downloads)
        parts.append(f"<p><strong>Data:</strong> {links}</p>")
    parts.append("</div></header>")
    if len(view.tracks) > 1:
        parts.append('<nav class="tracks">Tracks: ' + "".join(
            f'<a href="#{_anchor("track", t.name)}">{esc(t.name)}</a>' for t in view.tracks) + "</nav>")
    for track in view.tracks:
        parts += [f'<section id="{_anchor("track", track.name)}">',
                  f"<h2>Track <code>{esc(track.name)}</code></h2>",
                  f'<p class="hint">Ranked by {esc(track.primary_metric)} {track.arrow(track.primary_metric)}; '
                  "click a header to sort, hover a row or value for its protocol; best mean per column in "
                  "colour.</p>", render_table(view, track)]
        if any(is_robustness_metric(m) for m in track.metrics):
            parts.append(f'<p class="hint">{inline_markdown(ROBUSTNESS_LEGEND)}</p>')
        parts += [render_protocol(track), render_figures(figures.get(track.name, [])),
                  render_samples(view, track, out_dir), "</section>"]
    if suite_figures:
        parts += ["<section><h2>Figures</h2>", render_figures(suite_figures), "</section>"]
    seeds = ", ".join(map(str, view.seeds))
    parts.append(f"<footer><p>Values are mean ± sample std over the ok seeds ({esc(seeds)}); each seed trains from "
                 "scratch and seeds sampling and metric randomness. <code>wall s</code> is the mean wall time of a run "
                 "(training + scoring), <code>peak MiB</code> the largest peak memory over its seeds. Sample grids "
                 "show the first seed's model.</p><p>Made by <code>bench</code> (genfusion-bench).</p></footer>")
    return page(f"{view.suite} leaderboard", "\n".join(p for p in parts if p))


def write_view_html(view: LeaderboardView, out_dir: Path, logs_dir: Path | None = None,
                    suite_figures: list[tuple[str, str]] | None = None, back: str | None = None,
                    name: str = LEADERBOARD_HTML) -> Path:
    """Draws the track figures into ``out_dir/plots/`` and writes the page ``out_dir/name`` (atomically)."""
    from bench.site_plots import write_track_figures

    figures = write_track_figures(view, out_dir, logs_dir)
    path = out_dir / name
    atomic_write_text(path, render_leaderboard(view, out_dir, figures, suite_figures, back))
    return path


def write_html_leaderboard(out_dir: Path, spec: Any, table: pd.DataFrame, results: pd.DataFrame, command: str,
                           env: dict[str, Any], samples: dict[RowKey, str] | None = None,
                           reproduce: str | None = None) -> Path:
    """Writes ``leaderboard.html`` (and its figures under ``plots/``) next to leaderboard.csv / .md.

    The one call of ``bench run`` and ``bench report``: training curves come from ``out_dir/logs/`` when there,
    the accuracy-vs-noise figure is linked when the runner drew ``accuracy_vs_noise.png``.

    Args:
        out_dir: The output folder.
        spec: The :class:`~bench.spec.SuiteSpec`.
        table: The aggregated leaderboard.
        results: The long results.
        command: The command that made it.
        env: The environment dict.
        samples: Sample grid (relative to ``out_dir``) per (track, model, datamodule).
        reproduce: How to reproduce it, Markdown-ish, instead of the command (``bench report``'s source runs).

    Returns:
        The page's path.
    """
    from bench.plots import ACCURACY_VS_NOISE_PNG, has_noise_rows

    out_dir = Path(out_dir)
    view = view_from_run(spec, table, results, command, env, samples)
    if reproduce:
        view.reproduce = reproduce
    noise = [(f"{spec.name}: accuracy against noise level", ACCURACY_VS_NOISE_PNG)] if (
        len(results) and has_noise_rows(results) and (out_dir / ACCURACY_VS_NOISE_PNG).exists()) else []
    return write_view_html(view, out_dir, out_dir / "logs", noise)
