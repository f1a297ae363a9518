"""Leaderboards from long results: means and sample std over seeds, status summaries, ranking, atomic files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.atomic import atomic_write, atomic_write_text
from bench.leaderboard import RESULT_COLUMNS, aggregate, results_frame, to_markdown, write_leaderboard, write_results
from bench.spec import SuiteSpec, TrackSpec

HIGHER = {"fid": False, "kid": False, "mse": False, "accuracy": True, "f1-macro": True}

SPEC = SuiteSpec(
    name="synthetic",
    description="synthetic results",
    seeds=(0, 1, 2),
    tracks=(
        TrackSpec(name="generation", primary_metric="fid", metrics=("fid", "kid", "mse"),
                  datamodules={"digits": {}}, models={"dcgan": {}, "vae": {}, "wobbly": {}, "broken": {}}),
        TrackSpec(name="fusion", primary_metric="accuracy", metrics=("accuracy", "f1-macro"),
                  datamodules={"captioned-digits": {}},
                  models={"early-concat": {}, "unimodal-text": {}, "late-average": {}}),
    ),
)

# (track, family, model, datamodule) -> {seed: (status, {metric: value})}
RUNS: dict[tuple[str, str, str, str], dict[int, tuple[str, dict[str, float]]]] = {
    ("generation", "gan", "dcgan", "digits"): {
        0: ("ok", {"fid": 10.0, "kid": 0.10}),
        1: ("ok", {"fid": 12.5, "kid": 0.12}),
        2: ("ok", {"fid": 17.0, "kid": 0.2}),
    },
    ("generation", "vae", "vae", "digits"): {
        0: ("ok", {"fid": 5.0, "kid": 0.05, "mse": 0.01}),
        1: ("ok", {"fid": 6.0, "kid": 0.04, "mse": 0.02}),
        2: ("ok", {"fid": 9.5, "kid": 0.07, "mse": 0.03}),
    },
    # one ok seed, one diverged (non-finite values), one failed (no values)
    ("generation", "vae", "wobbly", "digits"): {
        0: ("ok", {"fid": 3.0, "kid": 0.01, "mse": 0.5}),
        1: ("diverged", {"fid": math.nan, "kid": math.nan, "mse": math.nan}),
        2: ("failed", {"fid": math.nan, "kid": math.nan, "mse": math.nan}),
    },
    # nothing ok: no numbers, ranked last
    ("generation", "gan", "broken", "digits"): {
        s: ("failed", {"fid": math.nan, "kid": math.nan}) for s in (0, 1, 2)
    },
    ("fusion", "fusion", "early-concat", "captioned-digits"): {
        0: ("ok", {"accuracy": 0.90, "f1-macro": 0.89}), 1: ("ok", {"accuracy": 0.94, "f1-macro": 0.93}),
        2: ("ok", {"accuracy": 0.92, "f1-macro": 0.91}),
    },
    ("fusion", "fusion", "unimodal-text", "captioned-digits"): {
        0: ("ok", {"accuracy": 0.40, "f1-macro": 0.30}), 1: ("ok", {"accuracy": 0.38, "f1-macro": 0.31}),
        2: ("ok", {"accuracy": 0.39, "f1-macro": 0.29}),
    },
    ("fusion", "fusion", "late-average", "captioned-digits"): {
        0: ("ok", {"accuracy": 0.95, "f1-macro": 0.94}), 1: ("ok", {"accuracy": 0.93, "f1-macro": 0.92}),
        2: ("diverged", {"accuracy": math.nan, "f1-macro": math.nan}),
    },
}


def make_row(track: str, family: str, model: str, datamodule: str, seed: int, metric: str, value: float,
             status: str) -> dict[str, Any]:
    features = metric in ("fid", "kid")
    return {
        "suite": "synthetic", "track": track, "family": family, "model": model,
        "fusion_stage": "late" if model.startswith("late") else "", "fusion_operator": "", "datamodule": datamodule,
        "seed": seed, "metric": metric, "value": value, "higher_is_better": HIGHER[metric],
        "backbone": "efficientnet-lite0" if features else "", "backbone_sha256": "ab" * 32 if features else "",
        "n_real": 358, "n_fake": 32 if features else None, "resize": "bilinear-224" if features else "",
        "split": "test", "protocol": "", "params": 1000 + len(model), "config_hash": f"hash-{model}",
        "git_commit": "0" * 40, "torch_version": "2.x", "lightning_version": "2.x",
        "timestamp": "2024-01-01T00:00:00+00:00", "wall_s": 1.0 + seed, "peak_mem_mb": 100.0 + seed, "status": status,
        "message": "" if status == "ok" else f"{status} on purpose",
    }


def make_rows(shuffle: bool = True) -> list[dict[str, Any]]:
    rows = [
        make_row(*key, seed, metric, value, status)
        for key, seeds in RUNS.items()
        for seed, (status, values) in seeds.items()
        for metric, value in values.items()
    ]
    if shuffle:  # the aggregate must not depend on the order of the rows
        rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    return rows


@pytest.fixture
def results() -> pd.DataFrame:
    return results_frame(make_rows())


@pytest.fixture
def table(results: pd.DataFrame) -> pd.DataFrame:
    return aggregate(results, SPEC)


def row_of(table: pd.DataFrame, model: str) -> pd.Series:
    part = table[table["model"] == model]
    assert len(part) == 1, f"{model}: {len(part)} rows"
    return part.iloc[0]


def ok_values(model: str, metric: str) -> np.ndarray:
    (key,) = [k for k in RUNS if k[2] == model]
    return np.array([v[metric] for s, (status, v) in sorted(RUNS[key].items()) if status == "ok"])


# ---------------------------------------------------------------------------------------------------- frames
def test_results_frame_has_exactly_the_result_columns() -> None:
    frame = results_frame(make_rows())
    assert list(frame.columns) == list(RESULT_COLUMNS)
    assert len(frame) == len(make_rows())


def test_results_frame_rejects_rows_missing_columns() -> None:
    rows = make_rows()
    del rows[3]["backbone_sha256"]
    with pytest.raises(ValueError, match="backbone_sha256"):
        results_frame(rows)


# -------------------------------------------------------------------------------------------------- aggregate
def test_one_row_per_model_and_datamodule(table: pd.DataFrame) -> None:
    keys = list(zip(table["track"], table["model"], table["datamodule"]))
    assert len(keys) == len(set(keys)) == len(RUNS)
    assert set(keys) == {(k[0], k[2], k[3]) for k in RUNS}
    expected = {"track", "family", "model", "fusion_stage", "fusion_operator", "datamodule", "params", "n_seeds", "status", "wall_s_mean", "peak_mem_mb_max"}
    assert expected <= set(table.columns)


@pytest.mark.parametrize(("model", "metric"), [("dcgan", "fid"), ("dcgan", "kid"), ("vae", "fid"), ("vae", "mse"),
                                               ("early-concat", "accuracy"), ("unimodal-text", "f1-macro")])
def test_mean_and_sample_std_over_seeds(table: pd.DataFrame, model: str, metric: str) -> None:
    values = ok_values(model, metric)
    row = row_of(table, model)
    assert row[f"{metric}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert row[f"{metric}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)  # sample std, not population
    assert row["n_seeds"] == 3
    assert row["status"] == "ok"


def test_diverged_and_failed_runs_are_excluded_and_summarized(table: pd.DataFrame) -> None:
    wobbly = row_of(table, "wobbly")
    assert wobbly["fid_mean"] == 3.0 and wobbly["mse_mean"] == 0.5  # only the ok seed
    assert math.isnan(wobbly["fid_std"])  # one seed has no sample std
    assert wobbly["n_seeds"] == 1
    parts = {p.strip() for p in wobbly["status"].split(",")}
    assert parts == {"1 ok", "1 diverged", "1 failed"}

    late = row_of(table, "late-average")
    assert late["accuracy_mean"] == pytest.approx(0.94)
    assert late["accuracy_std"] == pytest.approx(np.std([0.95, 0.93], ddof=1))
    assert late["n_seeds"] == 2
    assert {p.strip() for p in late["status"].split(",")} == {"2 ok", "1 diverged"}

    broken = row_of(table, "broken")
    assert broken["n_seeds"] == 0
    assert broken["status"] == "3 failed"
    assert math.isnan(broken["fid_mean"]) and math.isnan(broken["kid_mean"])


def test_metric_a_model_lacks_is_nan(table: pd.DataFrame) -> None:
    assert math.isnan(row_of(table, "dcgan")["mse_mean"])  # a GAN has no reconstruction


def test_rows_follow_track_order_and_primary_metric_direction(table: pd.DataFrame) -> None:
    # generation first (suite order) ranked by fid ascending (lower is better), all-NaN last;
    # then fusion ranked by accuracy descending (higher is better)
    assert list(table["track"]) == ["generation"] * 4 + ["fusion"] * 3
    assert list(table["model"]) == ["wobbly", "vae", "dcgan", "broken", "late-average", "early-concat", "unimodal-text"]


def test_ranking_with_nan_last_in_higher_is_better_track(results: pd.DataFrame) -> None:
    extra = [make_row("fusion", "fusion", "unimodal-image", "captioned-digits", s, m, math.nan, "failed")
             for s in (0, 1) for m in ("accuracy", "f1-macro")]
    frame = pd.concat([results_frame(extra), results], ignore_index=True)
    table = aggregate(frame, SPEC)
    fusion = table[table["track"] == "fusion"]
    assert list(fusion["model"]) == ["late-average", "early-concat", "unimodal-text", "unimodal-image"]


def test_wall_time_peak_memory_and_params(table: pd.DataFrame) -> None:
    row = row_of(table, "vae")
    assert row["wall_s_mean"] == pytest.approx(np.mean([1.0, 2.0, 3.0]))
    assert row["peak_mem_mb_max"] == pytest.approx(102.0)  # the largest over the seeds 0, 1, 2
    assert row["params"] == 1000 + len("vae")


# ---------------------------------------------------------------------------------------------------- files
def test_write_results_round_trips_through_pandas(tmp_path: Path) -> None:
    rows = make_rows(shuffle=False)
    path = tmp_path / "out" / "results.csv"
    write_results(rows, path)
    back = pd.read_csv(path)
    assert list(back.columns) == list(RESULT_COLUMNS)
    assert len(back) == len(rows)
    np.testing.assert_allclose(back["value"].to_numpy(float), [r["value"] for r in rows], rtol=1e-9)
    assert list(back["model"]) == [r["model"] for r in rows]
    assert list(back["status"]) == [r["status"] for r in rows]
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left


def test_write_leaderboard_files(tmp_path: Path, results: pd.DataFrame, table: pd.DataFrame) -> None:
    markdown = to_markdown(table, results, SPEC, "bench run --suite synthetic", ENV)
    csv_path, md_path = write_leaderboard(table, markdown, tmp_path)
    assert (csv_path, md_path) == (tmp_path / "leaderboard.csv", tmp_path / "leaderboard.md")
    back = pd.read_csv(csv_path)
    assert list(back.columns) == list(table.columns)
    for metric in ("fid", "kid", "mse", "accuracy", "f1-macro"):
        assert f"{metric}_mean" in back.columns and f"{metric}_std" in back.columns
    assert list(back["model"]) == list(table["model"])
    np.testing.assert_allclose(back["fid_mean"].to_numpy(float), table["fid_mean"].to_numpy(float), rtol=1e-5)
    text = md_path.read_text()
    assert text == markdown
    assert "## Track `generation`" in text and "## Track `fusion`" in text
    assert "bench run --suite synthetic" in text
    for model in ("dcgan", "vae", "early-concat", "late-average"):
        assert f"| {model} |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.csv", "leaderboard.md"]


ENV = {"git_commit": "0" * 40, "python": "3.x", "platform": "test", "cpu_count": 2, "cuda_available": False,
       "packages": {"torch": "2.x", "lightning": "2.x", "torchmetrics": "1.x"}}


def test_markdown_when_every_run_of_a_model_failed() -> None:
    rows = [make_row("generation", "gan", "broken", "digits", s, "fid", math.nan, "failed") for s in (0, 1)]
    results = results_frame(rows)
    table = aggregate(results, SPEC)
    text = to_markdown(table, results, SPEC, "bench run", ENV)
    assert "| broken |" in text and "2 failed" in text


def test_markdown_when_a_model_was_never_built() -> None:
    rows = [{**make_row("generation", "gan", "dcgan", "digits", s, "fid", math.nan, "failed"), "params": None}
            for s in (0, 1)]
    rows += [make_row("generation", "vae", "vae", "digits", s, "fid", 1.0 + s, "ok") for s in (0, 1)]
    results = results_frame(rows)
    table = aggregate(results, SPEC)
    assert list(table["model"]) == ["vae", "dcgan"]
    text = to_markdown(table, results, SPEC, "bench run", ENV)
    assert "| dcgan |" in text and "| vae |" in text


# --------------------------------------------------------------------------------------------------- atomic
class Boom(RuntimeError):
    pass


def test_atomic_write_keeps_previous_content_on_error(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("old,complete\n1,2\n")

    def half_then_raise(f) -> None:
        f.write("new,partial\n")
        f.flush()
        raise Boom("interrupted")

    with pytest.raises(Boom):
        atomic_write(path, half_then_raise)
    assert path.read_text() == "old,complete\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file remains


def test_atomic_write_error_on_new_file_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.md"

    def raise_now(f) -> None:
        f.write("x")
        raise Boom("interrupted")

    with pytest.raises(Boom):
        atomic_write(path, raise_now)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    atomic_write(tmp_path / "b.bin", lambda f: f.write(b"\x00\x01"), mode="wb")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


# ------------------------------------------------------------------------------------- fusion columns in Markdown
ROBUSTNESS_VALUES = {  # metric -> value for seed 0 (seed 1 adds 0.02); the order robustness.compute() writes them
    "acc-drop-image": 0.40, "acc-noise-image@0.1": 0.90, "acc-noise-image@0.25": 0.85, "acc-noise-image@0.5": 0.70,
    "acc-noise-image@1": 0.50, "acc-drop-text": 0.80, "acc-noise-text@0.1": 0.88, "acc-noise-text@0.25": 0.80,
    "acc-noise-text@0.5": 0.60, "acc-noise-text@1": 0.45, "relative-robustness-image": 0.80,
    "relative-robustness-text": 0.75,
}
FUSION_SPEC = SuiteSpec(
    name="fusion-synthetic", description="fusion results", seeds=(0, 1),
    tracks=(
        TrackSpec(name="classification", primary_metric="accuracy", metrics=("accuracy", "f1-macro", "robustness"),
                  datamodules={"captioned-digits": {}},
                  models={"mid-gated": {}, "late-average": {}, "unimodal-image": {}}),
        TrackSpec(name="generation", primary_metric="fid", metrics=("fid",), datamodules={"digits": {}},
                  models={"dcgan": {}}),
    ),
)


def fusion_rows() -> list[dict[str, Any]]:
    stages = {"mid-gated": ("mid", "mid-gated"), "late-average": ("late", "late-average"),
              "unimodal-image": ("none", "")}
    rows = []
    for k, (model, (stage, operator)) in enumerate(stages.items()):
        for seed in (0, 1):
            values = {"accuracy": 0.9 - 0.1 * k + 0.02 * seed, "f1-macro": 0.8 - 0.1 * k,
                      **{m: v - 0.05 * k + 0.02 * seed for m, v in ROBUSTNESS_VALUES.items()}}
            for metric, value in values.items():
                row = make_row("classification", "fusion", model, "captioned-digits", seed,
                               "accuracy" if metric not in ("accuracy", "f1-macro") else metric, value, "ok")
                protocol = "levels=0.1/0.25/0.5/1" if metric in ROBUSTNESS_VALUES else ""
                rows.append({**row, "metric": metric, "fusion_stage": stage, "fusion_operator": operator,
                             "higher_is_better": True, "protocol": protocol})
    rows += [{**make_row("generation", "gan", "dcgan", "digits", s, "fid", 10.0 + s, "ok"), "fusion_stage": ""}
             for s in (0, 1)]
    return rows


@pytest.fixture
def fusion_markdown() -> str:
    results = results_frame(fusion_rows())
    return to_markdown(aggregate(results, FUSION_SPEC), results, FUSION_SPEC, "bench run --suite fusion", ENV)


def table_lines(markdown: str, track: str) -> list[str]:
    section = markdown.split(f"## Track `{track}`")[1].split("\n## ")[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_markdown_stage_and_operator_columns_after_the_model(fusion_markdown: str) -> None:
    header, _, *rows = table_lines(fusion_markdown, "classification")
    assert cells(header)[:4] == ["model", "stage", "operator", "family"]
    by_model = {cells(r)[0]: cells(r) for r in rows}
    assert by_model["mid-gated"][1:3] == ["mid", "mid-gated"]
    assert by_model["late-average"][1:3] == ["late", "late-average"]
    assert by_model["unimodal-image"][1:3] == ["none", "–"]  # the baseline has a stage tag and no operator
    assert list(by_model) == ["mid-gated", "late-average", "unimodal-image"]  # ranked by accuracy


def test_markdown_omits_stage_columns_for_tracks_without_fusion(fusion_markdown: str, results: pd.DataFrame,
                                                                table: pd.DataFrame) -> None:
    header = table_lines(fusion_markdown, "generation")[0]
    assert "stage" not in cells(header) and "operator" not in cells(header)
    # the fusion track of the original synthetic suite has a stage on late-average only: the columns appear
    text = to_markdown(table, results, SPEC, "bench run", ENV)
    assert cells(table_lines(text, "fusion")[0])[:3] == ["model", "stage", "operator"]
    assert cells(table_lines(text, "generation")[0])[:2] == ["model", "family"]


def test_markdown_groups_robustness_columns(fusion_markdown: str) -> None:
    """accuracy, macro-F1, then drop-image, drop-text, the noise levels per modality ascending, relative robustness."""
    header, _, first, *_ = table_lines(fusion_markdown, "classification")
    metric_headers = cells(header)[7:-3]
    assert metric_headers == [
        "accuracy ↑", "f1-macro ↑", "drop image ↑", "drop text ↑",
        "image noise 0.1 ↑", "image noise 0.25 ↑", "image noise 0.5 ↑", "image noise 1 ↑",
        "text noise 0.1 ↑", "text noise 0.25 ↑", "text noise 0.5 ↑", "text noise 1 ↑",
        "rel. rob. image ↑", "rel. rob. text ↑",
    ]
    values = dict(zip(metric_headers, cells(first)[7:-3]))  # mid-gated: mean of seed 0 and seed 0 + 0.02
    assert values["drop text ↑"] == f"{0.81:.4f} ± {np.std([0.80, 0.82], ddof=1):.4f}"
    assert values["image noise 0.25 ↑"].startswith("0.8600 ± ")
    assert "Robustness columns:" in fusion_markdown.split("## Track `generation`")[0]
    assert "Robustness columns:" not in fusion_markdown.split("## Track `generation`")[1]
    # the 12 robustness rows share one protocol line instead of twelve
    protocol = [line for line in fusion_markdown.splitlines() if line.startswith("- `acc-drop-image`")]
    assert protocol == ["- `acc-drop-image` … `relative-robustness-text` (12 rows): split=test, n_real=358, "
                        "levels=0.1/0.25/0.5/1"]


def test_leaderboard_csv_columns_unchanged_by_markdown(results: pd.DataFrame, table: pd.DataFrame,
                                                       tmp_path: Path) -> None:
    """The CSV keeps the aggregate's columns (stage and operator after the keys), whatever the Markdown shows."""
    csv_path, _ = write_leaderboard(table, to_markdown(table, results, SPEC, "bench run", ENV), tmp_path)
    columns = list(pd.read_csv(csv_path).columns)
    assert columns[:8] == ["track", "family", "model", "datamodule", "fusion_stage", "fusion_operator", "params",
                           "n_seeds"]
    assert columns[-3:] == ["wall_s_mean", "peak_mem_mb_max", "protocol_note"]


def test_link_figure_inserts_once_above_the_footer(fusion_markdown: str) -> None:
    from bench.leaderboard import FOOTER_START, link_figure

    linked = link_figure(fusion_markdown, "accuracy against noise", "accuracy_vs_noise.png")
    assert linked.count("![accuracy against noise](accuracy_vs_noise.png)") == 1
    assert linked.index("## Figures") < linked.index("accuracy_vs_noise.png") < linked.index(FOOTER_START)
    assert link_figure(linked, "accuracy against noise", "accuracy_vs_noise.png") == linked  # idempotent
    both = link_figure(linked, "second", "other.png")
    assert both.count("## Figures") == 1 and both.index("accuracy_vs_noise.png") < both.index("other.png")
    results = results_frame(fusion_rows())
    direct = to_markdown(aggregate(results, FUSION_SPEC), results, FUSION_SPEC, "bench run --suite fusion", ENV,
                         figures={"accuracy against noise": "accuracy_vs_noise.png"})
    assert direct == linked  # the runner's figures= argument and link_figure give the same Markdown
