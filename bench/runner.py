"""Runs a suite's matrix — for each track, models × datamodules × seeds — and writes results and leaderboards.

Everything a run needs is validated and loaded before the first model trains (names, model arguments, datasets,
backbone weights), so a bad suite or a missing dataset fails in seconds with exit code 2, never halfway through.
One run that raises is recorded with status ``failed`` (and one whose loss became NaN/inf with ``diverged``);
the rest of the suite goes on. results.csv is rewritten atomically after every run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
import yaml
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console

from bench.atomic import atomic_write, atomic_write_text
from bench.backbones import FeatureBackbone
from bench.backbones.build import build_backbone
from bench.callbacks import DivergenceMonitor
from bench.evaluate import Evaluator, applicable_metrics
from bench.hashing import config_hash
from bench.leaderboard import aggregate, results_frame, to_markdown, write_leaderboard, write_results
from bench.memory import PeakMemory
from bench.plots import ACCURACY_VS_NOISE_PNG, plot_accuracy_vs_noise
from bench.metrics import METRICS
from bench.metrics.base import BACKBONE_FIELD_OF_KIND, FEATURE_BACKBONE_INPUT_KINDS
from bench.metrics.cross_modal import ImageClassifierBackbone, ImageTextScorer
from bench.provenance import environment_info, git_commit, package_version, utc_now
from bench.spec import EvalSpec, SpecError, SuiteSpec, TrackSpec, check_eval_backbones, model_entry
from datamodules import DATAMODULES, BenchDataModule
from models import MODELS, BenchModule, ImageGenerator, TextToImageGenerator


@dataclass
class RunOptions:
    """How (not what) to run.

    Attributes:
        out_dir: Where results, leaderboards, logs and weights go.
        accelerator: Lightning accelerator ("auto", "cpu", "gpu").
        devices: Lightning devices.
        cache_dir: Real-feature cache (None: the default).
        backbone_weights: Weights file for the suite's backbone(s) instead of their default.
        console: Where progress is drawn (None: no progress bars).
        command: The command line, recorded in the Markdown.
    """

    out_dir: Path
    accelerator: str = "auto"
    devices: int | str = 1
    cache_dir: Path | None = None
    backbone_weights: Path | None = None
    console: Console | None = None
    command: str = ""


@dataclass
class SuiteOutcome:
    """What a finished suite run produced."""

    out_dir: Path
    results_csv: Path
    leaderboard_csv: Path
    leaderboard_md: Path
    status_counts: dict[str, int]
    leaderboard: list[dict[str, Any]]


def backbone_key(spec: EvalSpec) -> tuple[str, int | None, str | None]:
    """(name, size, resize mode) of a track's backbone: tracks with equal keys share one instance."""
    return spec.backbone, spec.backbone_size, spec.resize


def extra_backbone_key(name: str) -> tuple[str, None, None]:
    """Key of an ``eval.clip_backbone`` / ``eval.classifier_backbone`` in :func:`prepare`'s backbones: built with its
    own defaults (size, resize mode and weights), so one instance serves every track naming it."""
    return name, None, None


#: The interface each extra backbone field asks for (checked by :func:`prepare`).
_EXTRA_BACKBONE_INTERFACE: dict[str, tuple[type, str]] = {
    "clip_backbone": (ImageTextScorer, "similarity(images uint8, captions: list[str]) -> (B,) cosines"),
    "classifier_backbone": (ImageClassifierBackbone, "classify(images uint8) -> (B, K) logits"),
}


def _build_extra_backbones(
    track: TrackSpec, source: str, index: int, backbones: dict[tuple[str, int | None, str | None], FeatureBackbone]
) -> None:
    """Builds the image–text / classifier backbones that track number ``index``'s metrics need into ``backbones``.

    Raises:
        SpecError: A needed field is missing, names an unknown backbone, a backbone that does not build, or one
            without the interface the field asks for.
    """
    where = f"tracks[{index}].eval"
    check_eval_backbones(track.eval, track.metrics, where, source)
    kinds = {METRICS.get(m).input_kind for m in track.metrics}
    for fld in sorted({BACKBONE_FIELD_OF_KIND[k] for k in kinds if k in BACKBONE_FIELD_OF_KIND}):
        name = getattr(track.eval, fld)
        key = extra_backbone_key(name)
        if key not in backbones:
            try:
                backbones[key] = build_backbone(*key)
            except ValueError as err:
                raise SpecError(f"{source}: key '{where}.{fld}': {err}") from err
        interface, signature = _EXTRA_BACKBONE_INTERFACE[fld]
        if not isinstance(backbones[key], interface):
            raise SpecError(f"{source}: key '{where}.{fld}': backbone {name!r} has no {signature}")


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _build_model(label: str, args: dict[str, Any], dm: BenchDataModule, where: str) -> BenchModule:
    """Builds a track's model entry ``label: args`` for ``dm`` (``args`` may name the registered model under
    ``model``); bad arguments, and files they name that do not exist (e.g. a ``tokenizer_weights``), become a
    SpecError naming ``where`` (file and key)."""
    name, hparams = model_entry(label, args)
    try:
        return MODELS.get(name).from_data(dm.data_spec(), **hparams)
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise SpecError(f"{where}: {err}") from err


def prepare(
    spec: SuiteSpec, backbone_weights: Path | None = None
) -> tuple[dict[str, BenchDataModule], dict[tuple[str, int | None, str | None], FeatureBackbone]]:
    """Loads every datamodule and backbone and builds every model once, so configuration errors surface first.

    Args:
        spec: The suite.
        backbone_weights: A weights file given to every feature backbone (``eval.backbone``) instead of its
            default (``--backbone-weights``); image–text and classifier backbones load their own.

    Returns:
        Datamodules by ``(name, args)`` key and backbones by ``(name, size, resize mode)``; the image–text and
        classifier backbones (``eval.clip_backbone``, ``eval.classifier_backbone``) the metrics need are there
        under :func:`extra_backbone_key`.

    Raises:
        SpecError, DataUnavailableError, BackboneWeightsError: Before any training.
    """
    dms: dict[str, BenchDataModule] = {}
    backbones: dict[tuple[str, int | None, str | None], FeatureBackbone] = {}
    for i, track in enumerate(spec.tracks):
        for dm_name, dm_args in track.datamodules.items():
            key = _dm_key(dm_name, dm_args)
            if key not in dms:
                try:
                    dms[key] = DATAMODULES.get(dm_name)(**dm_args)
                except (TypeError, ValueError) as err:
                    raise SpecError(f"{spec.source}: key 'tracks[{i}].datamodules.{dm_name}': {err}") from err
                dms[key].setup()
            provided = dms[key].data_spec().modalities
            if any(METRICS.get(m).input_kind == "image_text" for m in track.metrics) and not callable(
                getattr(dms[key], "caption_strings", None)
            ):
                raise SpecError(
                    f"{spec.source}: track '{track.name}': datamodule {dm_name!r} has no caption strings "
                    f"(caption_strings(split)), which clip-score metrics score images against"
                )
            for model_name, model_args in track.models.items():
                where = f"{spec.source}: key 'tracks[{i}].models.{model_name}'"
                model = _build_model(model_name, model_args, dms[key], where)
                missing = [m for m in model.required_modalities() if m not in provided]
                if missing:
                    raise SpecError(
                        f"{spec.source}: track '{track.name}': model {model_name!r} needs modalities {missing} that "
                        f"datamodule {dm_name!r} does not provide (it provides {list(provided)})"
                    )
                if not applicable_metrics(model, track.metrics):
                    raise SpecError(
                        f"{spec.source}: track '{track.name}': none of the metrics {list(track.metrics)} applies to "
                        f"model {model_name!r} (family {model.family!r})"
                    )
        if any(METRICS.get(m).input_kind in FEATURE_BACKBONE_INPUT_KINDS for m in track.metrics):
            bb_key = backbone_key(track.eval)
            if bb_key not in backbones:
                try:
                    backbones[bb_key] = build_backbone(*bb_key, weights_path=backbone_weights)
                except ValueError as err:
                    raise SpecError(f"{spec.source}: key 'tracks[{i}].eval': {err}") from err
        _build_extra_backbones(track, spec.source, i, backbones)
    return dms, backbones


def _dm_key(name: str, args: dict[str, Any]) -> str:
    return f"{name}:{json.dumps(args, sort_keys=True)}"


def _trainer(track: TrackSpec, model: BenchModule, opts: RunOptions, log_name: str, seed: int) -> pl.Trainer:
    t = track.trainer
    callbacks: list[pl.Callback] = [DivergenceMonitor()]
    show_bar = opts.console is not None and sys.stderr.isatty()
    if show_bar:
        callbacks.append(RichProgressBar(leave=False, console_kwargs={"stderr": True}))
    clip = t.gradient_clip_val if model.automatic_optimization else None
    # Several devices: spawn the workers, so that only this process runs the suite loop and the evaluation
    # (the default "ddp" launcher would re-execute the whole `bench run` command in every rank).
    strategy = "ddp_spawn" if isinstance(opts.devices, int) and opts.devices > 1 else "auto"
    return pl.Trainer(
        accelerator=opts.accelerator,
        devices=opts.devices,
        strategy=strategy,
        max_epochs=t.max_epochs,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        gradient_clip_val=clip,
        deterministic=True,
        logger=CSVLogger(opts.out_dir / "logs", name=log_name, version=f"seed{seed}"),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=show_bar,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        callbacks=callbacks,
    )


SAMPLE_GRID_SIZE = 64
#: Captions (rows) and images per caption (columns) of a text-to-image model's sample grid.
CAPTION_GRID_ROWS, CAPTION_GRID_COLS = 8, 8


def _grid_array(images: torch.Tensor, nrow: int) -> Any:
    """(N, C, H, W) images in [0, 1] → an (H', W', 3) uint8 array of an ``nrow``-wide grid."""
    from torchvision.utils import make_grid

    grid = make_grid(images.float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)  # (3, H', W')
    return grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _save_png(image: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: image.save(f, format="PNG"), mode="wb")


def caption_rows(dm: BenchDataModule, split: str, n: int) -> list[int]:
    """Indices of the first ``n`` distinct caption strings of ``split``, in split order."""
    first: dict[str, int] = {}
    for i, caption in enumerate(dm.caption_strings(split)):
        first.setdefault(caption, i)
        if len(first) == n:
            break
    return list(first.values())


@torch.no_grad()
def save_sample_grid(model: ImageGenerator, path: Path, seed: int, dm: BenchDataModule | None = None,
                     split: str = "test") -> None:
    """Saves a PNG grid of ``model``'s samples (drawn with ``seed``) to ``path``: 8×8 samples, or for a
    text-to-image model on captioned data one row per caption (the first 8 distinct captions of ``split``, printed
    at the left of their row) with 8 samples each."""
    from PIL import Image, ImageDraw

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    if not (isinstance(model, TextToImageGenerator) and dm is not None and hasattr(dm, "caption_strings")):
        images = model.sample(SAMPLE_GRID_SIZE, generator=gen)  # (64, C, H, W)
        _save_png(Image.fromarray(_grid_array(images, 8)), path)
        return
    rows = caption_rows(dm, split, CAPTION_GRID_ROWS)
    text = dm.split_tensors(split)["text"][rows].repeat_interleave(CAPTION_GRID_COLS, 0)  # (R·8, L)
    images = model.sample_from_text(text.to(model.device), generator=gen)  # (R·8, C, H, W)
    grid = Image.fromarray(_grid_array(images, CAPTION_GRID_COLS))
    captions = [dm.caption_strings(split)[i] for i in rows]
    row_height = grid.height / len(rows)
    draw_probe = ImageDraw.Draw(grid)
    margin = 8 + max(int(draw_probe.textlength(c)) for c in captions)
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, caption in enumerate(captions):
        draw.text((4, r * row_height + row_height / 2), caption, fill="black", anchor="lm")
    _save_png(canvas, path)


def run_one(
    spec: SuiteSpec,
    track: TrackSpec,
    dm: BenchDataModule,
    model_name: str,
    model_args: dict[str, Any],
    seed: int,
    evaluator: Evaluator,
    opts: RunOptions,
) -> list[dict[str, Any]]:
    """Trains and scores one (model, datamodule, seed); returns its result rows (never raises for model errors)."""
    dm_name = dm.registry_name
    base = {
        "suite": spec.name, "track": track.name, "model": model_name, "datamodule": dm_name, "seed": seed,
        "config_hash": config_hash({
            "track": track.name, "model": model_name, "model_args": model_args, "datamodule": dm_name,
            "datamodule_args": dict(dm.hparams), "trainer": dataclasses.asdict(track.trainer),
            "eval": dataclasses.asdict(track.eval), "metrics": track.metrics,
        }),
        "git_commit": git_commit(), "torch_version": torch.__version__,
        "lightning_version": package_version("lightning"),
    }
    empty = {"value": math.nan, "backbone": "", "backbone_sha256": "", "n_real": None, "n_fake": None,
             "resize": "", "split": track.eval.real_split, "protocol": ""}
    start = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)
    model: BenchModule | None = None
    memory = PeakMemory("cuda" if opts.accelerator == "gpu" else "cpu")
    try:
        with memory:
            model = _build_model(model_name, model_args, dm, spec.source)
            trainer = _trainer(track, model, opts, f"{track.name}/{model_name}-{dm_name}", seed)
            trainer.fit(model, datamodule=dm)
            if model.diverged:
                status, message, scores = "diverged", model.divergence_message, []
            else:
                scores = evaluator.evaluate(model, dm, seed)
                bad = [s.metric for s in scores if not math.isfinite(s.value)]
                status, message = ("diverged", f"non-finite {', '.join(bad)}") if bad else ("ok", "")
        if status == "ok":
            stem = f"{track.name}/{model_name}-{dm_name}-seed{seed}"
            weights = opts.out_dir / "weights" / f"{stem}.pt"
            weights.parent.mkdir(parents=True, exist_ok=True)
            model.save_weights(weights)
            if isinstance(model, ImageGenerator):
                save_sample_grid(model, opts.out_dir / "samples" / f"{stem}.png", seed, dm, track.eval.real_split)
    except Exception as err:  # one broken run must not stop the suite; it is recorded with its reason
        status, message, scores = "failed", f"{type(err).__name__}: {err}".replace("\n", " ")[:500], []
    wall = time.perf_counter() - start
    family = model.family if model is not None else MODELS.get(model_entry(model_name, model_args)[0]).family
    params = model.num_parameters() if model is not None else None
    stage, operator = (model.fusion_stage, model.fusion_operator) if model is not None else ("", "")
    common = {**base, "family": family, "fusion_stage": stage, "fusion_operator": operator, "params": params, "timestamp": utc_now(), "wall_s": round(wall, 3),
              "peak_mem_mb": round(memory.peak_mb, 1), "status": status, "message": message}
    if scores:
        return [{**common, **empty, **dataclasses.asdict(s)} for s in scores]
    names = applicable_metrics(model, track.metrics) if model is not None else list(track.metrics)
    return [{**common, **empty, "metric": m, "higher_is_better": METRICS.get(m).higher_is_better} for m in names]


def sample_grids(out: Path, spec: SuiteSpec) -> dict[tuple[str, str, str], str]:
    """The first seed's sample grid (path relative to ``out``) per (track, model, datamodule) that has one."""
    grids = {}
    for track in spec.tracks:
        for dm_name in track.datamodules:
            for model_name in track.models:
                for seed in spec.seeds:
                    rel = f"samples/{track.name}/{model_name}-{dm_name}-seed{seed}.png"
                    if (out / rel).exists():
                        grids[(track.name, model_name, dm_name)] = rel
                        break
    return grids


def noise_figure(results: pd.DataFrame, out: Path) -> dict[str, str] | None:
    """Draws ``accuracy_vs_noise.png`` into ``out`` when ``results`` has robustness rows; returns the figure links
    for the Markdown (caption → path relative to ``out``), or None."""
    if plot_accuracy_vs_noise(results, out / ACCURACY_VS_NOISE_PNG) is None:
        return None
    return {f"{results['suite'].iloc[0]}: accuracy against noise level": ACCURACY_VS_NOISE_PNG}


def run_suite(spec: SuiteSpec, opts: RunOptions) -> SuiteOutcome:
    """Runs every (track, datamodule, model, seed) of ``spec`` and writes into ``opts.out_dir``:

    results.csv (long), leaderboard.csv / leaderboard.md (mean ± std over seeds), suite.yaml (the resolved spec),
    environment.json, logs/ (Lightning CSV logs), weights/ (final weights of every ok run), samples/ (sample grids)
    and accuracy_vs_noise.png when a track scores robustness.
    """
    _quiet_lightning()
    torch.use_deterministic_algorithms(True, warn_only=True)
    dms, backbones = prepare(spec, opts.backbone_weights)
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    env = environment_info(opts.accelerator, opts.devices)
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    atomic_write_text(out / "environment.json", json.dumps(env, indent=2) + "\n")

    rows: list[dict[str, Any]] = []
    results_csv = out / "results.csv"
    total = sum(len(t.datamodules) * len(t.models) for t in spec.tracks) * len(spec.seeds)
    done = 0
    for track in spec.tracks:
        backbone = backbones.get(backbone_key(track.eval))
        clip, classifier = (backbones.get(extra_backbone_key(name)) if name else None
                            for name in (track.eval.clip_backbone, track.eval.classifier_backbone))
        evaluator = Evaluator(track.eval, track.metrics, backbone, opts.cache_dir, opts.console,
                              clip_backbone=clip, classifier_backbone=classifier)
        for dm_name, dm_args in track.datamodules.items():
            dm = dms[_dm_key(dm_name, dm_args)]
            for model_name, model_args in track.models.items():
                for seed in spec.seeds:
                    done += 1
                    if opts.console is not None:
                        opts.console.print(f"[{done}/{total}] {track.name}: {model_name} on {dm_name}, seed {seed}")
                    run_rows = run_one(spec, track, dm, model_name, model_args, seed, evaluator, opts)
                    rows += run_rows
                    write_results(rows, results_csv)
                    if opts.console is not None and run_rows[0]["status"] != "ok":
                        opts.console.print(f"  {run_rows[0]['status']}: {run_rows[0]['message']}")

    results = results_frame(rows)
    table = aggregate(results, spec)
    markdown = to_markdown(table, results, spec, opts.command, env, sample_grids(out, spec), noise_figure(results, out))
    lb_csv, lb_md = write_leaderboard(table, markdown, out)
    runs = results.drop_duplicates(["track", "model", "datamodule", "seed"])
    return SuiteOutcome(
        out_dir=out, results_csv=results_csv, leaderboard_csv=lb_csv, leaderboard_md=lb_md,
        status_counts=runs["status"].value_counts().to_dict(),
        leaderboard=json.loads(table.to_json(orient="records")),
    )
