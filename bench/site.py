"""``bench site DIR --out SITE``: one static site over every leaderboard published in DIR.

Layout (every link relative, so the folder can be zipped, uploaded or opened from ``file://`` as is)::

    SITE/index.html                       the suites: description, tracks, models, seeds, winner per track
    SITE/<suite>/index.html               the suite's page (as bench run's leaderboard.html)
    SITE/<suite>/leaderboard.csv          copied from DIR/<suite>.csv
    SITE/<suite>/results.csv              copied from DIR/<suite>-results.csv
    SITE/<suite>/samples/<track>/*.png    copied from DIR/<suite>-samples/ (the first seed's grids)
    SITE/<suite>/accuracy_vs_noise.png    redrawn from the results (distinct styles) when it has noise rows
    SITE/<suite>/plots/*.png              the track figures (bench.site_plots)

Copies are byte-identical to the published PNGs (git stores one blob for both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.atomic import atomic_copy, atomic_write_text
from bench.html_leaderboard import esc, format_mean_std, href, inline_markdown, page, write_view_html
from bench.leaderboard_view import LeaderboardView
from bench.published import PublishedError, load_published, published_suites


@dataclass
class SuiteSummary:
    """One line of the index page."""

    name: str
    link: str
    summary: str
    n_tracks: int
    n_models: int
    seeds: list[int]
    winners: list[str]


def one_line(description: str, limit: int = 220) -> str:
    """The first sentence of a description (Markdown-ish), at most ``limit`` characters."""
    text = " ".join(description.split())
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z*`])", text, maxsplit=1)[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def winners(view: LeaderboardView) -> list[str]:
    """Per track, ``track: model (metric mean ± std ↓)`` of its best row by the primary metric."""
    lines = []
    for track in view.tracks:
        rows = view.rows(track.name)
        column = f"{track.primary_metric}_mean"
        ranked = rows[rows[column].notna()] if column in rows else rows[:0]
        if ranked.empty:
            continue
        best = ranked.iloc[0]  # published tables are ranked by the primary metric, missing values last
        value = format_mean_std(best[column], best.get(f"{track.primary_metric}_std"))
        lines.append(f"{track.name}: {best['model']} ({track.primary_metric} {value} {track.arrow(track.primary_metric)})")
    return lines


def summarize(view: LeaderboardView, link: str) -> SuiteSummary:
    """The index entry of a suite."""
    return SuiteSummary(name=view.suite, link=link, summary=one_line(view.description),
                        n_tracks=len(view.tracks), n_models=view.table["model"].nunique(),
                        seeds=view.seeds, winners=winners(view))


def render_index(suites: list[SuiteSummary], source: str) -> str:
    """The index page: a sortable table of the suites."""
    rows = []
    for s in suites:
        cells = [f'<td><a href="{href(s.link)}"><code>{esc(s.name)}</code></a></td>',
                 f'<td class="wrap">{inline_markdown(s.summary)}</td>',
                 f'<td class="num" data-sort="{s.n_tracks}">{s.n_tracks}</td>',
                 f'<td class="num" data-sort="{s.n_models}">{s.n_models}</td>',
                 f'<td class="num" data-sort="{len(s.seeds)}">{len(s.seeds)}</td>',
                 '<td class="wrap">' + "<br>".join(esc(w) for w in s.winners) + "</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f'<th scope="col" data-first="{first}">{label}</th>' for label, first in (
        ("suite", "ascending"), ("description", "ascending"), ("tracks", "descending"), ("models", "descending"),
        ("seeds", "descending"), ("winner per track (primary metric)", "ascending")))
    body = ("<header><h1>genfusion-bench leaderboards</h1>"
            f'<p class="meta">{len(suites)} published suites, built by <code>bench site</code> from the CSVs in '
            f"<code>{esc(source)}</code>. Each page has a sortable table per track, the protocol of every "
            "number, figures and sample grids.</p></header>"
            '<div class="table-wrap"><table class="sortable index" id="suites"><thead><tr>' + head
            + "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"
            "<footer><p>Values are mean ± sample std over seeds. Made by <code>bench</code> (genfusion-bench)."
            "</p></footer>")
    return page("genfusion-bench leaderboards", body)


def build_suite_page(folder: Path, suite: str, site: Path) -> LeaderboardView:
    """Writes ``site/<suite>/`` (page, data copies, sample grids, figures) from the published files."""
    from bench.plots import ACCURACY_VS_NOISE_PNG, has_noise_rows, plot_accuracy_vs_noise

    view, grids = load_published(folder, suite)
    out = site / suite
    atomic_copy(folder / f"{suite}.csv", out / "leaderboard.csv")
    atomic_copy(folder / f"{suite}-results.csv", out / "results.csv")
    for key, source in grids.items():
        atomic_copy(source, out / view.samples[key])
    noise = []
    if len(view.results) and has_noise_rows(view.results):
        plot_accuracy_vs_noise(view.results, out / ACCURACY_VS_NOISE_PNG)
        noise = [(f"{suite}: accuracy against noise level", ACCURACY_VS_NOISE_PNG)]
    write_view_html(view, out, None, noise, back="../index.html", name="index.html")
    return view


def build_site(folder: Path, site: Path) -> list[Path]:
    """Builds the site of every suite published in ``folder`` into ``site``.

    Returns:
        The pages written, the index last.

    Raises:
        PublishedError: ``folder`` is missing, holds no published leaderboard, or one of its CSVs is unreadable.
    """
    folder, site = Path(folder), Path(site)
    if not folder.is_dir():
        raise PublishedError(f"{folder}: no such folder; give the folder of published leaderboards (as "
                             "`bench run --publish DIR` writes them, e.g. leaderboards)")
    suites = published_suites(folder)
    if not suites:
        raise PublishedError(f"{folder}: holds no published leaderboard (a <suite>.csv next to its "
                             "<suite>-results.csv, as `bench run --publish DIR` writes them)")
    summaries, pages = [], []
    for suite in suites:
        view = build_suite_page(folder, suite, site)
        summaries.append(summarize(view, f"{suite}/index.html"))
        pages.append(site / suite / "index.html")
    index = site / "index.html"
    atomic_write_text(index, render_index(summaries, folder.name or str(folder)))
    return [*pages, index]
