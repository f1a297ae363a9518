"""Line and marker styles that stay distinguishable when a figure holds many models.

tab20's pairs (a colour and its pastel twin) made 16 lines of the accuracy-vs-noise figure look alike. Here every
series gets one of tab10's ten saturated colours *and* a marker shape; the shape list has 13 entries, coprime with
10, so no two of the first 130 series share both. When series come in groups (fusion stages, drawn with their own
line style), colours are distinct within each group of ≤ 10 (see :func:`grouped_styles`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Filled markers that differ in outline, not only in size (13 of them: coprime with tab10's 10 colours).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", "h", ">", "d", "p")


@dataclass(frozen=True)
class SeriesStyle:
    """What tells one plotted series from another."""

    color: tuple[float, float, float, float]
    marker: str


def _tab10(i: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return cmap(i % cmap.N)


def distinct_styles(n: int) -> list[SeriesStyle]:
    """``n`` styles, no two alike in both colour and marker (for n ≤ 130)."""
    return [SeriesStyle(_tab10(i), MARKERS[i % len(MARKERS)]) for i in range(n)]


def grouped_styles(groups: list[str]) -> list[SeriesStyle]:
    """One style per series, given each series' group: colours are distinct within a group, markers over all.

    Groups take consecutive runs of tab10's colours in order of first appearance (a group of k series starts where
    the groups before it ended), so up to 10 series in all never share a colour, and the ≤ 10 series of one group
    never do either.

    Args:
        groups: The group of each series, in drawing order (e.g. the fusion stage, drawn as the line style).

    Returns:
        A style per series; no two share both colour and marker (up to 130 series); markers are distinct over
        the first 13 series wherever that leaves the pairs distinct.
    """
    sizes = {g: groups.count(g) for g in dict.fromkeys(groups)}
    start, offset = 0, {}
    for group, size in sizes.items():
        offset[group], start = start, start + size
    seen: dict[str, int] = {}
    taken: set[tuple[int, int]] = set()
    styles = []
    for i, group in enumerate(groups):
        k = seen.get(group, 0)
        seen[group] = k + 1
        color = (offset[group] + k) % 10
        marker = next((m % len(MARKERS) for m in range(i, i + len(MARKERS))
                       if (color, m % len(MARKERS)) not in taken), i % len(MARKERS))
        taken.add((color, marker))
        styles.append(SeriesStyle(_tab10(color), MARKERS[marker]))
    return styles
