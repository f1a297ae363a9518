"""`bench run --suite fusion --fast` end to end (in-process, through ``bench.cli.main``) into a temporary folder,
plus what ``--fast`` does to a suite."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from bench.cli import FAST_RUN, fast_spec, main
from bench.suites import load_suite
from models import MODELS

FUSED = {  # model -> stage, for every fused model of the suite (their operator is their registered name)
    "early-concat": "early", "mid-concat": "mid", "mid-sum": "mid", "mid-gated": "mid", "mid-tensor": "mid",
    "mid-lowrank-tensor": "mid", "mid-attention": "mid", "mid-cross-attention": "mid", "late-average": "late",
    "late-weighted": "late", "late-stacking": "late",
}
VARIANTS = {  # suite label -> (stage, operator): mid-concat with the ViT, with MiniLM, with the alignment loss
    "mid-concat-vit": ("mid", "mid-concat"), "mid-concat-minilm": ("mid", "mid-concat"),
    "mid-concat-align": ("mid", "mid-concat"),
}
GENERATIVE = {"mvae-early": ("early", "early-concat"), "mvae-mid": ("mid", "mid-concat"),
              "mvae-mid-gated": ("mid", "mid-gated"), "mvae-late": ("late", "poe"), "mopoe": ("late", "mopoe"),
              "mmvae": ("late", "moe")}
BASELINES = ("unimodal-image", "unimodal-text")
ROBUSTNESS = ["acc-drop-image", "acc-drop-text", *(f"acc-noise-{m}@{lvl}" for m in ("image", "text")
                                                   for lvl in ("0.1", "0.25", "0.5", "1")),
              "relative-robustness-image", "relative-robustness-text"]


#: One seed: --fast keeps the suite's 3 seeds (checked without training in test_fast_spec_caps_training_and_evaluation),
#: but 20 models x 3 seeds is 60 runs, too slow for a test on a shared 2-core CPU; one seed runs every model.
SEEDS = "0"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, Path]:
    """One `bench run --suite fusion --fast --seeds 0` for the whole module (20 runs of a few seconds each)."""
    root = tmp_path_factory.mktemp("fusion-fast")
    out, publish = root / "out", root / "published"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(root / "cache"))
        code = main(["run", "--suite", "fusion", "--fast", "--seeds", SEEDS, "--out", str(out),
                     "--publish", str(publish)])
    return code, out, publish


def classification(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the suite's classification track (the suite may hold other tracks)."""
    return frame[frame["track"] == "classification"]


@pytest.mark.slow
def test_fast_run_writes_every_file(fast_run) -> None:
    code, out, _ = fast_run
    assert code == 0
    for name in ("results.csv", "leaderboard.csv", "leaderboard.md", "accuracy_vs_noise.png", "suite.yaml",
                 "environment.json"):
        assert (out / name).is_file(), name
    with Image.open(out / "accuracy_vs_noise.png") as img:
        assert img.format == "PNG" and img.size[0] > 400
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_fast_run_is_a_smoke_run(fast_run) -> None:
    """--fast: 1 epoch of at most 2 training batches per run, recorded in suite.yaml; --seeds still applies."""
    _, out, _ = fast_run
    resolved = yaml.safe_load((out / "suite.yaml").read_text())
    assert resolved["seeds"] == [int(s) for s in SEEDS.split(",")]
    for track in resolved["tracks"]:
        assert track["trainer"]["max_epochs"] == 1
        assert track["trainer"]["limit_train_batches"] == track["trainer"]["limit_val_batches"] == 2
    logs = pd.read_csv(out / "logs" / "classification" / "mid-concat-captioned-digits" / "seed0" / "metrics.csv")
    assert logs["step"].max() <= 1  # two optimizer steps: 0 and 1
    assert set(logs["epoch"].dropna()) == {0}


@pytest.mark.slow
def test_leaderboard_has_stage_operator_baselines_and_robustness(fast_run) -> None:
    _, out, _ = fast_run
    board = classification(pd.read_csv(out / "leaderboard.csv", keep_default_na=False, na_values=[""]))
    assert sorted(board["model"]) == sorted([*FUSED, *VARIANTS, *BASELINES])
    assert (board["n_seeds"] == len(SEEDS.split(","))).all() and (board["status"] == "ok").all()
    rows = board.set_index("model")
    for model, stage in FUSED.items():
        assert rows.loc[model, "fusion_stage"] == stage
        assert rows.loc[model, "fusion_operator"] == model
    for model, (stage, operator) in VARIANTS.items():
        assert (rows.loc[model, "fusion_stage"], rows.loc[model, "fusion_operator"]) == (stage, operator)
    for model in BASELINES:  # the unimodal baselines are always reported, with no fusion operator
        assert pd.isna(rows.loc[model, "fusion_operator"])
        assert rows.loc[model, "fusion_stage"] == MODELS.get(model).fusion_stage
    for metric in ["accuracy", "f1-macro", *ROBUSTNESS]:
        assert f"{metric}_mean" in board.columns and f"{metric}_std" in board.columns
        assert board[f"{metric}_mean"].between(0, 2).all(), metric
    results = classification(pd.read_csv(out / "results.csv"))
    assert set(results["metric"]) == {"accuracy", "f1-macro", *ROBUSTNESS}

    markdown = (out / "leaderboard.md").read_text()
    track_md = markdown.split("## Track `classification`")[1].split("## ")[0]
    header = next(line for line in track_md.splitlines() if line.startswith("| model |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:3] == ["model", "stage", "operator"]
    expected_order = ["accuracy ↑", "f1-macro ↑", "drop image ↑", "drop text ↑", "image noise 0.1 ↑",
                      "image noise 0.25 ↑", "image noise 0.5 ↑", "image noise 1 ↑", "text noise 0.1 ↑",
                      "text noise 0.25 ↑", "text noise 0.5 ↑", "text noise 1 ↑", "rel. rob. image ↑",
                      "rel. rob. text ↑"]
    assert cells[7:7 + len(expected_order)] == expected_order
    for model, stage in FUSED.items():
        assert f"| {model} | {stage} | {model} |" in track_md
    for model in BASELINES:
        assert f"| {model} | {MODELS.get(model).fusion_stage} | – |" in track_md
    assert "Reproduce with: `bench run --suite fusion --fast" in markdown
    assert "Smoke run (`--fast`)" in markdown
    assert "![fusion: accuracy against noise level](accuracy_vs_noise.png)" in markdown


@pytest.mark.slow
def test_generation_track_scores_the_multimodal_vaes(fast_run) -> None:
    """The generative head: reconstruction, FID/KID of samples and of caption-to-image generations, coherence."""
    _, out, _ = fast_run
    board = pd.read_csv(out / "leaderboard.csv", keep_default_na=False, na_values=[""])
    board = board[board["track"] == "generation"].set_index("model")
    assert sorted(board.index) == sorted([*GENERATIVE, "real-data"])  # the reference row (bench.reference)
    reference = board.loc["real-data"]
    assert reference["family"] == "reference" and reference["fid_mean"] < board["fid_mean"].drop("real-data").min()
    assert pd.isna(reference["mse_mean"]) and pd.isna(reference["cross-fid_mean"])  # only what samples are scored on
    board = board.drop("real-data")
    for model, (stage, operator) in GENERATIVE.items():
        assert (board.loc[model, "fusion_stage"], board.loc[model, "fusion_operator"]) == (stage, operator)
    for metric in ("mse", "psnr", "ssim", "fid", "kid", "cross-fid", "cross-kid", "coherence", "coherence-real"):
        assert board[f"{metric}_mean"].notna().all(), metric
    assert board["coherence_mean"].between(0, 1).all()
    assert board["coherence-real_mean"].nunique() == 1, "the real-image reference is the same for every model"
    assert (board["status"] == "ok").all()


@pytest.mark.slow
def test_publish_copies_the_plot_and_links_it(fast_run) -> None:
    _, out, publish = fast_run
    assert sorted(p.name for p in publish.iterdir()) == [
        "fusion-accuracy-vs-noise.png", "fusion-results.csv", "fusion-samples", "fusion.csv", "fusion.md"]
    assert (publish / "fusion-accuracy-vs-noise.png").read_bytes() == (out / "accuracy_vs_noise.png").read_bytes()
    published = (publish / "fusion.md").read_text()
    assert "](fusion-accuracy-vs-noise.png)" in published and "](accuracy_vs_noise.png)" not in published


def test_bad_model_name_exits_2_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["run", "--suite", "fusion", "--fast", "--models", "mid-concat,mid-nonsense", "--out", str(out)])
    assert code == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "mid-nonsense" in lines[0] and "unimodal-text" in lines[0]
    assert captured.out == "" and not out.exists()


# ------------------------------------------------------------------------------------------ fast_spec (no run)
def test_fast_spec_caps_training_and_evaluation() -> None:
    """--fast sets 1 epoch / 2 batches and caps the generative evaluation; the seeds and the models stay."""
    spec = load_suite("fusion")
    ev = dataclasses.replace(spec.tracks[0].eval, n_fake=1000, kid_subsets=100, nll_images=0, is_splits=10)
    spec = dataclasses.replace(spec, tracks=(dataclasses.replace(spec.tracks[0], eval=ev),))
    fast = fast_spec(spec, max_epochs_given=False, limit_given=False)
    track = fast.tracks[0]
    assert (track.trainer.max_epochs, track.trainer.limit_train_batches, track.trainer.limit_val_batches) == (1, 2, 2)
    caps = FAST_RUN["eval_caps"]
    assert track.eval.n_fake == caps["n_fake"] and track.eval.kid_subsets == caps["kid_subsets"]
    assert track.eval.nll_images == caps["nll_images"]  # 0 ("all images") is capped too
    assert track.eval.is_splits == caps["is_splits"] and track.eval.real_split == ev.real_split
    assert fast.seeds == spec.seeds and track.models == spec.tracks[0].models
    assert "Smoke run" in fast.description


def test_fast_spec_keeps_explicit_epochs_and_limits() -> None:
    spec = load_suite("fusion").with_overrides(max_epochs=3, limit_batches=0.5)
    trainer = fast_spec(spec, max_epochs_given=True, limit_given=True).tracks[0].trainer
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.limit_val_batches) == (3, 0.5, 0.5)
    small = dataclasses.replace(spec.tracks[0].eval, n_fake=10)
    spec = dataclasses.replace(spec, tracks=(dataclasses.replace(spec.tracks[0], eval=small),))
    assert fast_spec(spec, True, True).tracks[0].eval.n_fake == 10  # caps never raise a value
