"""HTML leaderboards without a browser: the tables' rows, escaping of hostile labels, the protocol text, the
figures and grids linked, file modes, and ``bench site`` (pages, copies, one-line errors)."""

from __future__ import annotations

import os
import stat
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.html_leaderboard import format_mean_std, grid_width, href, inline_markdown, png_size
from bench.published import parse_markdown, published_suites
from bench.site import build_site, one_line
from tests.bench.site_fixture import FID_PROTOCOL, HOSTILE, PRC_PROTOCOL, SEEDS, expected_rows, write_published, write_run


class PageParser(HTMLParser):
    """Collects, per table id, the body rows (their ``title`` and cell texts), and every ``img src`` / script."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.images: list[str] = []
        self.scripts = 0
        self.handlers: list[str] = []  # on* attributes (event handlers): the page itself has none
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.tables[self._table].append({"title": a.get("title", ""), "cells": []})
        elif tag == "td" and self._in_body and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1]["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    write_run(out)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("site")
    published = write_published(root)
    build_site(published, root / "site")
    return published, root / "site"


def test_tables_have_one_row_per_leaderboard_row(run_dir: Path) -> None:
    page = parse(run_dir / "leaderboard.html")
    assert {k: len(v) for k, v in page.tables.items()} == {
        f"table-{track}": n for track, n in expected_rows(run_dir / "leaderboard.csv").items()}
    generation = page.tables["table-generation"]
    assert [row["cells"][1] for row in generation] == ["dcgan", "vae", HOSTILE]  # ranked by fid, lower first


def test_hostile_label_is_text_not_markup(run_dir: Path) -> None:
    text = (run_dir / "leaderboard.html").read_text()
    page = parse(run_dir / "leaderboard.html")
    assert page.scripts == 1 and not page.handlers  # only the page's own sorter, no injected element
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;&lt;script&gt;" in text
    assert HOSTILE not in text
    assert all(src.startswith(("samples/", "plots/", "accuracy_vs_noise.png")) for src in page.images)


def test_mean_std_seed_count_and_protocol_on_hover(run_dir: Path) -> None:
    page = parse(run_dir / "leaderboard.html")
    table = pd.read_csv(run_dir / "leaderboard.csv")
    dcgan = table[table["model"] == "dcgan"].iloc[0]
    row = page.tables["table-generation"][0]
    assert format_mean_std(dcgan["fid_mean"], dcgan["fid_std"]) in row["cells"]
    assert row["cells"][5] == str(len(SEEDS))  # the seeds column
    assert FID_PROTOCOL in row["title"] and PRC_PROTOCOL in row["title"]
    assert f"seeds {', '.join(map(str, SEEDS))}" in row["title"] and "config cfg0005" in row["title"]
    text = (run_dir / "leaderboard.html").read_text()
    assert "<details><summary>Protocol</summary>" in text and "bench run --suite demo --publish leaderboards" in text
    assert "Python 3.11.7" in text and "fabricated suite for the HTML tests" in text


def test_figures_and_grids_are_written_and_linked(run_dir: Path) -> None:
    page = parse(run_dir / "leaderboard.html")
    expected = {"plots/generation-primary.png", "plots/generation-precision-recall.png", "plots/generation-cost.png",
                "plots/generation-training.png", "plots/fusion-primary.png", "plots/fusion-cost.png",
                "accuracy_vs_noise.png", "samples/generation/dcgan-digits-seed0.png",
                "samples/generation/vae-digits-seed0.png"}
    assert set(page.images) == expected
    assert all((run_dir / src).is_file() and png_size(run_dir / src) for src in page.images)
    assert 'width="292" height="292"' in (run_dir / "leaderboard.html").read_text()  # 146 px grid shown at 2x


def test_files_are_written_0644(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        page = write_run(tmp_path / "out")
    finally:
        os.umask(old)
    for path in [page, *sorted((tmp_path / "out" / "plots").glob("*.png"))]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_site_index_and_suite_page(site: tuple[Path, Path]) -> None:
    published, root = site
    assert published_suites(published) == ["demo"]
    index = parse(root / "index.html")
    (entry,) = index.tables["suites"]
    assert entry["cells"][0] == "demo" and entry["cells"][2:5] == ["2", "6", "3"]  # tracks, models, seeds
    text = (root / "index.html").read_text()
    assert "generation: dcgan (fid" in text and "fusion: early-concat (accuracy" in text
    assert 'href="demo/index.html"' in text
    page = parse(root / "demo" / "index.html")
    assert {k: len(v) for k, v in page.tables.items()} == {
        f"table-{t}": n for t, n in expected_rows(published / "demo.csv").items()}
    for src in page.images:
        assert (root / "demo" / src).is_file(), src
    grid = "samples/generation/dcgan-digits-seed0.png"
    assert (root / "demo" / grid).read_bytes() == (published / "demo-samples/generation/dcgan-digits-seed0.png").read_bytes()
    assert (root / "demo" / "results.csv").read_bytes() == (published / "demo-results.csv").read_bytes()
    assert FID_PROTOCOL in (root / "demo" / "index.html").read_text()


def test_published_markdown_is_read_back(site: tuple[Path, Path]) -> None:
    published, _ = site
    facts = parse_markdown((published / "demo.md").read_text())
    assert facts.primary == {"generation": "fid", "fusion": "accuracy"}
    assert facts.reproduce == "`bench run --suite demo --publish leaderboards`"
    assert facts.environment.startswith("git `0123456789abcdef") and facts.description.startswith("A fabricated")
    assert "max_epochs" in facts.trainer["generation"]


def test_bench_site_cli(tmp_path: Path, site: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    published, _ = site
    assert main(["site", str(published), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "index.html").is_file() and "1 suite page" in capsys.readouterr().out
    for folder in (tmp_path / "missing", tmp_path / "s" / "demo"):  # no folder; a folder without leaderboards
        assert main(["site", str(folder), "--out", str(tmp_path / "t")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bench: error: ") and err.count("\n") == 1 and str(folder) in err
    (tmp_path / "file").write_text("")
    assert main(["site", str(published), "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_unreadable_published_csv_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x.csv").write_text("not,a\nleaderboard,at all\n")
    (tmp_path / "x-results.csv").write_text("a\n1\n")
    assert main(["site", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.csv" in err and "lacks the columns" in err


def test_small_helpers() -> None:
    assert inline_markdown("a `<b>` **c** <d>") == "a <code>&lt;b&gt;</code> <strong>c</strong> &lt;d&gt;"
    assert href('samples/a b/"x".png') == "samples/a%20b/%22x%22.png"
    assert grid_width((146, 146)) == 292 and grid_width((242, 242)) == 484 and grid_width((298, 82)) == 596
    assert grid_width((403, 242)) == 403  # 2x would pass 800 px
    assert format_mean_std(178.546, 4.05) == "178.55 ± 4.05" and format_mean_std(float("nan"), 1) == "–"
    assert one_line("First one. Second one.") == "First one."
