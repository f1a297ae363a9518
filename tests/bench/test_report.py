"""Merging results files into one leaderboard: later runs replace earlier runs of the same model, never mix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.leaderboard import write_results
from bench.report import merge_results, read_results, report
from bench.spec import SpecError
from tests.bench.test_leaderboard import SPEC, make_rows


def write_run(folder: Path, rows: list[dict], command: str) -> Path:
    folder.mkdir(parents=True)
    path = folder / "results.csv"
    write_results(rows, path)
    (folder / "leaderboard.md").write_text(f"# x\n\nReproduce with: `{command}`\n")
    (folder / "environment.json").write_text(json.dumps({
        "git_commit": "abc", "python": "3.x", "packages": {"torch": "2", "lightning": "2", "torchmetrics": "1"},
        "platform": "linux", "cpu_count": 2, "cuda_available": False,
    }))
    return path


def test_a_later_run_replaces_every_seed_of_the_same_model(tmp_path: Path) -> None:
    rows = make_rows(shuffle=False)
    first = write_run(tmp_path / "a", rows, "bench run --suite synthetic")
    # the re-run has seeds 0 and 1 only: the old seed 2 must not survive next to them
    rerun = [dict(r, value=r["value"] + 100.0) for r in rows if r["model"] == "dcgan" and r["seed"] < 2]
    second = write_run(tmp_path / "c", rerun, "bench run --suite synthetic --models dcgan")
    grid = tmp_path / "c" / "samples" / "generation" / "dcgan-digits-seed0.png"
    grid.parent.mkdir(parents=True)
    grid.write_bytes(b"png")
    merged, origin = merge_results([read_results(first), read_results(second)], SPEC, ["a", "c"])
    dcgan = merged[merged["model"] == "dcgan"]
    assert sorted(set(dcgan["seed"])) == [0, 1], "old seeds of the re-run model must not survive"
    assert (dcgan["value"] >= 100).all()
    others = merged[merged["model"] != "dcgan"]
    expected = pd.DataFrame([r for r in rows if r["model"] != "dcgan"])
    assert len(others) == len(expected)
    assert {o for o, m in zip(origin, merged["model"]) if m == "dcgan"} == {1}

    out = tmp_path / "merged"
    results_csv, lb_csv, lb_md = report(SPEC, [first, second], out, "bench report --suite synthetic")
    assert len(pd.read_csv(results_csv)) == len(merged)
    board = pd.read_csv(lb_csv)
    assert board.loc[board["model"] == "dcgan", "fid_mean"].iloc[0] == pytest.approx(111.25, rel=1e-6)  # (110 + 112.5) / 2
    text = lb_md.read_text()
    assert "`bench run --suite synthetic --models dcgan`: dcgan" in text
    assert "`bench run --suite synthetic`: " in text and "vae" in text
    assert (out / "samples" / "generation" / "dcgan-digits-seed0.png").read_bytes() == b"png"


def test_older_files_without_the_fusion_columns_are_read(tmp_path: Path) -> None:
    path = write_run(tmp_path / "a", make_rows(), "bench run")
    frame = pd.read_csv(path).drop(columns=["fusion_stage", "fusion_operator"])
    frame.to_csv(path, index=False)
    back = read_results(path)
    assert (back["fusion_stage"] == "").all() and list(back.columns)[:5] == ["suite", "track", "family", "model",
                                                                              "fusion_stage"]


def test_results_of_another_suite_or_model_are_refused(tmp_path: Path) -> None:
    rows = make_rows()
    other = write_run(tmp_path / "a", [dict(r, suite="other") for r in rows], "bench run")
    with pytest.raises(SpecError, match="not of suite 'synthetic'"):
        merge_results([read_results(other)], SPEC, [str(other)])
    stray = write_run(tmp_path / "b", [dict(r, model="stranger") for r in rows[:3]], "bench run")
    with pytest.raises(SpecError, match="stranger"):
        merge_results([read_results(stray)], SPEC, [str(stray)])
    not_results = tmp_path / "x.csv"
    not_results.write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="lacks the columns"):
        read_results(not_results)


def test_bench_report_command_merges_and_refuses_bad_input(tmp_path: Path, capsys) -> None:
    from bench.cli import main

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: synthetic\nseeds: [0, 1, 2]\ntracks:\n"
        "  - {name: generation, primary_metric: fid, metrics: [fid, kid, mse], datamodules: [digits],\n"
        "     models: [dcgan, vae]}\n"
    )
    rows = [r for r in make_rows() if r["model"] in ("dcgan", "vae")]
    first = write_run(tmp_path / "a", rows, "bench run --suite synthetic")
    out = tmp_path / "out"
    assert main(["report", "--suite", str(suite), "--results", str(first), "--out", str(out),
                 "--publish", str(tmp_path / "pub")]) == 0
    assert (out / "leaderboard.md").exists() and (tmp_path / "pub" / "synthetic.csv").exists()
    assert main(["report", "--suite", str(suite), "--results", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_run_of_another_protocol_is_marked_not_mixed_silently(tmp_path: Path) -> None:
    """Merging a full run with a --fast run of one model (fewer generated images): that row is marked and its
    protocol listed; the protocol block describes the other rows' protocol (it used to describe the first row)."""
    rows = make_rows(shuffle=False)
    first = write_run(tmp_path / "full", rows, "bench run --suite synthetic")
    fast = [dict(r, n_fake=16 if r["metric"] in ("fid", "kid") else r["n_fake"], value=r["value"] + 1)
            for r in rows if r["model"] == "dcgan"]
    second = write_run(tmp_path / "fast", fast, "bench run --suite synthetic --models dcgan --fast")
    _, lb_csv, lb_md = report(SPEC, [first, second], tmp_path / "merged", "bench report --suite synthetic")
    board = pd.read_csv(lb_csv).fillna("")
    notes = dict(zip(board["model"], board["protocol_note"]))
    assert "n_fake=16" in notes["dcgan"] and notes["vae"] == "" and notes["wobbly"] == ""
    text = lb_md.read_text()
    assert "| dcgan † |" in text
    assert "† `dcgan` on `digits` was scored under another protocol — fid: split=test, n_real=358, n_fake=16" in text
    protocol_lines = [line for line in text.splitlines() if line.startswith("- `fid`")]
    assert protocol_lines and all("n_fake=32" in line for line in protocol_lines)


def test_one_protocol_means_no_marks(tmp_path: Path) -> None:
    rows = make_rows(shuffle=False)
    _, lb_csv, lb_md = report(SPEC, [write_run(tmp_path / "a", rows, "bench run")], tmp_path / "m", "bench report")
    assert pd.read_csv(lb_csv)["protocol_note"].isna().all()
    assert "†" not in lb_md.read_text()
