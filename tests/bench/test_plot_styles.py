"""Distinguishable series: no two alike in colour and marker, colours distinct within a group, and the
accuracy-vs-noise figure of the fusion suite's 16 models (it used to draw them in look-alike tab20 pastels)."""

from __future__ import annotations

from typing import Any

from matplotlib.colors import to_hex

from bench.leaderboard import RESULT_COLUMNS, results_frame
from bench.plot_styles import MARKERS, distinct_styles, grouped_styles
from bench.plots import accuracy_vs_noise_figure

STAGES = ["early"] + ["mid"] * 7 + ["late"] * 3 + ["mid"] * 3 + ["none"] * 2  # the fusion suite's 16 lines


def test_distinct_styles_never_repeat_a_pair() -> None:
    styles = distinct_styles(130)
    assert len({(s.color, s.marker) for s in styles}) == 130
    assert len({s.color for s in styles[:10]}) == 10 and len(MARKERS) == 13


def test_grouped_styles_distinct_colours_within_groups_and_overall_when_few() -> None:
    styles = grouped_styles(STAGES)
    for stage in set(STAGES):
        colours = [s.color for s, g in zip(styles, STAGES) if g == stage]
        assert len(set(colours)) == len(colours), stage
    assert len({s.marker for s in styles}) == len(MARKERS)  # 16 series: every marker used
    few = grouped_styles(["early", "late", "none"])
    assert len({s.color for s in few}) == 3  # one series per group must not all be blue
    crowded = grouped_styles(["mid"] * 25 + ["late"] * 30)  # more than 10 in a group: colours repeat, pairs do not
    assert len({(s.color, s.marker) for s in crowded}) == 55


def _row(model: str, stage: str, seed: int, metric: str, value: float) -> dict[str, Any]:
    return {**{c: "" for c in RESULT_COLUMNS}, "suite": "s", "track": "classification", "family": "fusion",
            "model": model, "fusion_stage": stage, "datamodule": "captioned-digits", "seed": seed, "metric": metric,
            "value": value, "higher_is_better": True, "status": "ok", "n_real": 100, "n_fake": None, "params": 10,
            "wall_s": 1.0, "peak_mem_mb": 1.0}


def test_accuracy_vs_noise_lines_are_distinguishable() -> None:
    rows = []
    for i, stage in enumerate(STAGES):
        for seed in (0, 1):
            rows.append(_row(f"m{i}", stage, seed, "accuracy", 0.9 - 0.01 * i))
            rows += [_row(f"m{i}", stage, seed, f"acc-noise-image@{lvl}", 0.9 - 0.01 * i - lvl / 2)
                     for lvl in (0.1, 0.5)]
    fig = accuracy_vs_noise_figure(results_frame(rows))
    lines = [container.lines[0] for container in fig.axes[0].containers]  # each errorbar's data line
    assert len(lines) == len(STAGES)
    looks = [(to_hex(line.get_color()), line.get_marker(), line.get_linestyle()) for line in lines]
    assert len(set(looks)) == len(looks)
    assert len({(c, m) for c, m, _ in looks}) == len(looks)  # even without the line style
