"""The inline CSS and JavaScript of the HTML leaderboards.

Both are inlined into every page: the pages must open offline (clusters without internet), from ``file://`` and
from any static host, so nothing is loaded from a CDN.
"""

from __future__ import annotations

CSS = """
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6475; --bg: #ffffff; --panel: #f5f7fa;
        --line: #d8dde6; --accent: #2458b8; --best: #0b7a3b; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e4e8ef; --muted: #9aa3b2; --bg: #14171c; --panel: #1d2128; --line: #333a45; --accent: #7fa8f5;
          --best: #5fd18e; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 1.5rem 2rem 4rem; font: 15px/1.5 system-ui, -apple-system,
       "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.7rem; margin: 0 0 .6rem; } h2 { font-size: 1.3rem; margin: 2.4rem 0 .4rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
a { color: var(--accent); } code { font: .9em ui-monospace, SFMono-Regular, Menlo, monospace;
  background: var(--panel); padding: .05em .3em; border-radius: 3px; overflow-wrap: anywhere; }
.meta { color: var(--muted); } .meta p { margin: .3rem 0; }
nav.tracks a { margin-right: 1rem; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-size: .86rem; font-variant-numeric: tabular-nums; width: 100%; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: left; }
td.num { text-align: right; } td.wrap { white-space: normal; min-width: 22rem; } tbody tr:hover { background: var(--panel); }
thead th { position: sticky; top: 0; background: var(--panel); cursor: pointer; user-select: none; }
thead th:focus { outline: 2px solid var(--accent); outline-offset: -2px; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .7em; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .7em; }
th.primary { color: var(--accent); } td.best { color: var(--best); font-weight: 600; }
.status-bad { color: #c0392b; } .hint { color: var(--muted); font-size: .85rem; margin: .3rem 0; }
details { margin: .6rem 0; } summary { cursor: pointer; color: var(--accent); }
details ul { margin: .3rem 0; padding-left: 1.3rem; font-size: .85rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; } figcaption { color: var(--muted); font-size: .85rem; margin-top: .2rem; }
figure.plot img { max-width: 100%; height: auto; background: #fff; border-radius: 4px; }
figure.grid img { max-width: 100%; height: auto; image-rendering: pixelated; image-rendering: crisp-edges; background: #000; border-radius: 2px; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""

#: The table sorter. Written here instead of using a library: the pages must work offline and from file:// (no
#: CDN), and sorting rows by a cell's ``data-sort`` value takes 40 lines — not worth a dependency to vendor, audit
#: and update. Click (or Enter/Space on a focused header) sorts; a second click reverses; empty cells ("–") stay
#: last either way. Headers carry ``data-first`` ("ascending"/"descending"): the first click puts the best first.
JS = """
(function () {
  "use strict";
  function sortKey(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (raw === "" || raw === "\\u2013") { return null; }
    var num = Number(raw);
    return isNaN(num) ? raw.toLowerCase() : num;
  }
  function compare(x, y) {
    if (typeof x !== typeof y) { x = String(x); y = String(y); }
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  function sortBy(table, th, col) {
    var now = th.getAttribute("aria-sort");
    var order = now ? (now === "ascending" ? "descending" : "ascending") : (th.getAttribute("data-first") || "ascending");
    var sign = order === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {  // Array.prototype.sort is stable: equal keys keep their order
      var x = sortKey(a.cells[col]), y = sortKey(b.cells[col]);
      if (x === null || y === null) { return (x === null ? 1 : 0) - (y === null ? 1 : 0); }
      return sign * compare(x, y);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", order);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
})();
"""
