"""Runs a suite's matrix — for each track, models × datamodules × seeds — and writes results and leaderboards.

Everything a run needs is validated and loaded before the first model trains (names, model arguments, datasets,
backbone weights), so a bad suite or a missing dataset fails in seconds with exit code 2, never halfway through.
One run that raises is recorded with status ``failed`` (and one whose loss became NaN/inf with ``diverged``);
the rest of the suite goes on.

Each (track, model label, datamodule, seed) is a run unit (:mod:`bench.units`): it trains with resumable
checkpoints (:mod:`bench.resume`), and its outcome is written as one completion record; results.csv and the
leaderboards are rebuilt from the records after every unit. Running the same command again skips complete units
and resumes an interrupted one from its last checkpoint; SIGINT / SIGTERM stop cleanly (:mod:`bench.interrupts`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
import yaml
from rich.console import Console

from bench.atomic import (WriteError, atomic_write, atomic_write_text, disk_error, remove_stale_temporaries,
                          write_error)
from bench.backbones import FeatureBackbone
from bench.backbones.build import build_backbone
from bench.callbacks import DivergenceMonitor, QuietProgressBar
from bench.errors import InputError
from bench.evaluate import Evaluator, applicable_metrics
from bench.hashing import config_hash
from bench.html_leaderboard import write_html_leaderboard
from bench.interrupts import SuiteInterrupted, interruptible
from bench.leaderboard import aggregate, results_frame, to_markdown, write_leaderboard, write_results
from bench.loggers import build_loggers
from bench.memory import PeakMemory
from bench.plots import ACCURACY_VS_NOISE_PNG, plot_accuracy_vs_noise
from bench.metrics import METRICS
from bench.metrics.base import probe_requests
from bench.metrics import requests as rq
from bench.metrics.requests import backbone_fields, needs_feature_backbone, split_metric_name
from bench.metrics.cross_modal import ImageClassifierBackbone, ImageTextScorer
from bench.providers import require_caption_label_sets
from bench.provenance import environment_info, git_commit, package_version, utc_now
from bench.reference import REFERENCE_FAMILY, REFERENCE_LABEL, reference_model
from bench.resume import UnitCheckpoint
from bench.spec import EvalSpec, SpecError, SuiteSpec, TrackSpec, TrainerSpec, check_eval_backbones, model_entry
from bench.units import (PathOutsideOutError, Unit, UnitLock, collect_rows, inside, is_complete, results_lock,
                         write_record)
from datamodules import DATAMODULES, BenchDataModule
from models import MODELS, BenchModule, ImageGenerator, TextToImageGenerator
from models.hparams import MAX_PARAMETERS, check_hparam_types, parameter_count


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
        rerun: Run complete units again: True for all, or the model labels to rerun (``--rerun``).
        launcher: ``local`` (units one after another in this process) or ``ray`` (units as Ray tasks).
        ray_address: The Ray cluster to use (None: ``$RAY_ADDRESS``, else a local Ray instance).
        threads_per_unit: torch intra-op threads of each unit (None: torch's default); also the CPUs a Ray task
            asks for. Values are bit-identical between launchers at equal threads per unit.
        max_retries: Ray retries of a unit whose worker or node died, before it is recorded as failed.
        dry_run: Check everything (suite, data, models, backbones, trainer settings, paths) and print each
            unit with whether it would run or is complete, then stop: nothing is trained or written.
        notes: Lines printed once the preflight has passed (e.g. what ``--datamodule`` kept of the suite).
    """

    out_dir: Path
    accelerator: str = "auto"
    devices: int | str = 1
    cache_dir: Path | None = None
    backbone_weights: Path | None = None
    console: Console | None = None
    command: str = ""
    rerun: bool | frozenset[str] = False
    launcher: str = "local"
    ray_address: str | None = None
    threads_per_unit: int | None = None
    max_retries: int = 2
    dry_run: bool = False
    notes: tuple[str, ...] = ()


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
    """Key in :func:`prepare`'s backbones of a backbone a metric names by itself — ``eval.clip_backbone``,
    ``eval.classifier_backbone`` or a ``<metric>@<backbone>`` entry: built with its own defaults (size, resize
    mode and weights), so one instance serves every track naming it."""
    return name, None, None


#: The interface each extra backbone field asks for (checked by :func:`prepare`).
_EXTRA_BACKBONE_INTERFACE: dict[str, tuple[type, str]] = {
    "clip_backbone": (ImageTextScorer, "similarity(images uint8, captions: list[str]) -> (B,) cosines"),
    "classifier_backbone": (ImageClassifierBackbone, "classify(images uint8) -> (B, K) logits"),
}


def _track_requests(track: TrackSpec, source: str, index: int) -> dict[str, tuple]:
    """The requests of each metric entry of track number ``index`` (of an instance built on a minimal context;
    preflight builds the real ones per datamodule in :func:`_check_metrics`).

    Raises:
        SpecError: A metric cannot even be built (e.g. weights it loads are missing), naming the file and key.
    """
    out = {}
    for entry in track.metrics:
        try:
            out[entry] = probe_requests(METRICS.get(split_metric_name(entry)[0]))
        except InputError as err:
            raise SpecError(f"{source}: key 'tracks[{index}].metrics': {entry}: {err}") from err
        except (TypeError, ValueError, RuntimeError, OSError) as err:
            raise SpecError(f"{source}: key 'tracks[{index}].metrics': metric {entry!r} cannot be built: "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    return out


def _build_named(key: tuple[str, int | None, str | None], backbones: dict, where: str,
                 weights_path: Path | None = None) -> FeatureBackbone:
    if key not in backbones:
        try:
            backbones[key] = build_backbone(*key, weights_path=weights_path)
        except ValueError as err:
            raise SpecError(f"{where}: {err}") from err
    return backbones[key]


def _build_backbones(track: TrackSpec, source: str, index: int, backbones: dict,
                     backbone_weights: Path | None) -> None:
    """Builds every backbone the requests of track number ``index``'s metrics need into ``backbones``: the
    track's feature backbone, those of ``<metric>@<backbone>`` entries, and the image–text / classifier backbones.

    Raises:
        SpecError: A needed field is missing, names an unknown backbone, a backbone that does not build, or one
            without the interface its requests ask for (class logits, similarity, classify).
    """
    where = f"tracks[{index}].eval"
    check_eval_backbones(track.eval, [split_metric_name(m)[0] for m in track.metrics], where, source)
    requests = _track_requests(track, source, index)
    for entry, reqs in requests.items():
        if not needs_feature_backbone(reqs):
            continue
        named = split_metric_name(entry)[1]
        if named is None:
            bb = _build_named(backbone_key(track.eval), backbones, f"{source}: key '{where}'", backbone_weights)
        else:
            bb = _build_named(extra_backbone_key(named), backbones, f"{source}: key 'tracks[{index}].metrics': "
                              f"{entry}")
        if any(isinstance(r, rq.Logits) for r in reqs) and \
                type(bb).features_and_logits is FeatureBackbone.features_and_logits:
            raise SpecError(f"{source}: key 'tracks[{index}].metrics': {entry} needs class logits, and backbone "
                            f"{bb.registry_name!r} has no classification head (use one with features_and_logits, "
                            f"e.g. inception-v3-compat or efficientnet-lite0)")
    for fld in sorted(set().union(*(backbone_fields(r) for r in requests.values()))):
        name = getattr(track.eval, fld)
        bb = _build_named(extra_backbone_key(name), backbones, f"{source}: key '{where}.{fld}'")
        interface, signature = _EXTRA_BACKBONE_INTERFACE[fld]
        if not isinstance(bb, interface):
            raise SpecError(f"{source}: key '{where}.{fld}': backbone {name!r} has no {signature}")


def _check_metrics(track: TrackSpec, dm: BenchDataModule, source: str, index: int, backbones: dict,
                   seed: int) -> None:
    """Builds every metric of the track for ``dm`` as the evaluator will (weights a metric loads are loaded
    now), so a metric that cannot be built fails before any training."""
    try:
        _evaluator(track, backbones, RunOptions(out_dir=Path("."))).build_metrics(dm.data_spec(), seed)
    except InputError:
        raise
    except (TypeError, ValueError, RuntimeError, OSError) as err:
        raise SpecError(f"{source}: key 'tracks[{index}].metrics': cannot build the metrics for datamodule "
                        f"{dm.registry_name!r}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                        ) from err


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # a resumed unit's CSV log starts again (its old rows are replaced); a fresh one's folder was removed
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")


def _build_model(label: str, args: dict[str, Any], dm: BenchDataModule, where: str) -> BenchModule:
    """Builds a track's model entry ``label: args`` for ``dm`` (``args`` may name the registered model under
    ``model``); bad arguments, and files they name that do not exist (e.g. a ``tokenizer_weights``), become a
    SpecError naming ``where`` (file and key)."""
    name, hparams = model_entry(label, args)
    cls = MODELS.get(name)
    try:
        check_hparam_types(cls, hparams)
        count = parameter_count(lambda: cls.from_data(dm.data_spec(), **hparams))
        if count is not None and count > MAX_PARAMETERS:
            raise ValueError(f"these arguments make a model of {count:,} parameters, more than the {MAX_PARAMETERS:,} "
                             f"the runner builds; check the sizes")
        return cls.from_data(dm.data_spec(), **hparams)
    except (TypeError, ValueError, FileNotFoundError, RuntimeError) as err:  # RuntimeError: torch on bad sizes
        raise SpecError(f"{where}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err


def prepare(
    spec: SuiteSpec, backbone_weights: Path | None = None,
    models_out: dict[tuple[str, str], BenchModule] | None = None,
) -> tuple[dict[str, BenchDataModule], dict[tuple[str, int | None, str | None], FeatureBackbone]]:
    """Loads every datamodule and backbone and builds every model once, so configuration errors surface first.

    Args:
        spec: The suite.
        backbone_weights: A weights file given to every feature backbone (``eval.backbone``) instead of its
            default (``--backbone-weights``); image–text and classifier backbones load their own.
        models_out: If given, receives one built model per (track, model label) (for the trainer checks).

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
                where = f"{spec.source}: key 'tracks[{i}].datamodules.{dm_name}'"
                try:
                    check_hparam_types(DATAMODULES.get(dm_name), dm_args)
                    dms[key] = DATAMODULES.get(dm_name)(**dm_args)
                    dms[key].setup()
                except InputError:
                    raise
                except (TypeError, ValueError, RuntimeError) as err:
                    raise SpecError(f"{where}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
            provided = dms[key].data_spec().modalities
            requests = [r for reqs in _track_requests(track, spec.source, i).values() for r in reqs]
            if any(isinstance(r, rq.CaptionSimilarity) for r in requests) and not callable(
                getattr(dms[key], "caption_strings", None)
            ):
                raise SpecError(
                    f"{spec.source}: track '{track.name}': datamodule {dm_name!r} has no caption strings "
                    f"(caption_strings(split)), which clip-score metrics score images against"
                )
            if any(isinstance(r, rq.CaptionLabelSets) for r in requests):
                try:
                    require_caption_label_sets(dms[key])
                except InputError as err:
                    raise SpecError(f"{spec.source}: track '{track.name}': {err}") from err
            for model_name, model_args in track.models.items():
                where = f"{spec.source}: key 'tracks[{i}].models.{model_name}'"
                model = _build_model(model_name, model_args, dms[key], where)
                if models_out is not None:
                    models_out.setdefault((track.name, model_name), model)
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
        _build_backbones(track, spec.source, i, backbones, backbone_weights)
        for dm_name, dm_args in track.datamodules.items():
            _check_metrics(track, dms[_dm_key(dm_name, dm_args)], spec.source, i, backbones, spec.seeds[0])
    return dms, backbones


def _dm_key(name: str, args: dict[str, Any]) -> str:
    return f"{name}:{json.dumps(args, sort_keys=True)}"


def _strategy(trainer: TrainerSpec, opts: RunOptions) -> str:
    """The suite's strategy; with several devices and ``auto``, ``ddp_spawn`` (the default ``ddp`` launcher would
    re-execute the whole `bench run` command in every rank). Under torchrun / SLURM (a cluster environment that
    launched this process) Lightning's own choice stands."""
    several = isinstance(opts.devices, int) and opts.devices > 1
    if trainer.strategy == "auto" and several and not _launched_by_cluster():
        return "ddp_spawn"
    return trainer.strategy


def _launched_by_cluster() -> bool:
    import os

    return "LOCAL_RANK" in os.environ or "SLURM_NTASKS" in os.environ


def batch_limit(limit: float, n_batches: int) -> float:
    """A ``limit_*_batches`` as Lightning should get it for a loader of ``n_batches``: a fraction that would leave
    no batch (``0.2`` of 3 batches; Lightning refuses it, and every run of a suite failed) becomes one batch;
    anything else is unchanged. Deterministic per datamodule, so the config hash (which holds the suite's value)
    still fixes the numbers."""
    if isinstance(limit, float) and 0 < limit < 1 and n_batches > 0 and int(n_batches * limit) < 1:
        return 1
    return limit


def resolved_limits(trainer: TrainerSpec, dm: BenchDataModule | None) -> tuple[float, float]:
    """(train, val) batch limits of ``trainer`` resolved for ``dm`` by :func:`batch_limit`."""
    if dm is None:
        return trainer.limit_train_batches, trainer.limit_val_batches
    return (batch_limit(trainer.limit_train_batches, len(dm.train_dataloader())),
            batch_limit(trainer.limit_val_batches, len(dm.val_dataloader())))


def _trainer(track: TrackSpec, model: BenchModule, opts: RunOptions, log_name: str, seed: int,
             checkpoint: pl.Callback | None = None, dm: BenchDataModule | None = None) -> pl.Trainer:
    t = track.trainer
    limit_train, limit_val = resolved_limits(t, dm)
    callbacks: list[pl.Callback] = [DivergenceMonitor()]
    if checkpoint is not None:
        callbacks.append(checkpoint)
    show_bar = opts.console is not None and sys.stderr.isatty()
    if show_bar:
        callbacks.append(QuietProgressBar(leave=False, console_kwargs={"stderr": True}))
    automatic = model.automatic_optimization
    return pl.Trainer(
        accelerator=opts.accelerator,
        devices=opts.devices,
        strategy=_strategy(t, opts),
        num_nodes=t.num_nodes,
        precision=t.precision,
        max_epochs=t.max_epochs,
        limit_train_batches=limit_train,
        limit_val_batches=limit_val,
        gradient_clip_val=t.gradient_clip_val if automatic else None,
        accumulate_grad_batches=t.accumulate_grad_batches if automatic else 1,
        deterministic=t.deterministic,
        logger=build_loggers(t.logger, opts.out_dir, log_name, seed),  # CSV first, then the suite's trackers
        enable_checkpointing=False,  # UnitCheckpoint (bench.resume) writes the resumable checkpoints
        enable_model_summary=False,
        enable_progress_bar=show_bar,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        callbacks=callbacks,
    )


def check_trainer_settings(spec: SuiteSpec, opts: RunOptions, models: dict[tuple[str, str], BenchModule]) -> None:
    """Builds each track's Trainer once (no training) so that a precision, strategy or accelerator Lightning
    cannot run here, or one a model cannot support, is a usage error before any training.

    Raises:
        SpecError: naming the track (and the model) and the setting.
    """
    for i, track in enumerate(spec.tracks):
        t = track.trainer
        for (track_name, label), model in models.items():
            if track_name != track.name:
                continue
            if not model.automatic_optimization and t.accumulate_grad_batches > 1:
                raise SpecError(f"{spec.source}: key 'tracks[{i}].trainer.accumulate_grad_batches': model {label!r} "
                                f"uses manual optimization (one optimizer step per batch it decides itself); "
                                f"accumulation applies to automatically optimized models only, use 1")
        first = next((m for (name, _), m in models.items() if name == track.name), None)
        if first is None:
            continue
        settings = (f"accelerator={opts.accelerator}, devices={opts.devices}, precision={t.precision}, "
                    f"strategy={t.strategy}, num_nodes={t.num_nodes}")
        try:
            # in a temporary folder that is removed: building a tracker may create its store (MLflow's)
            with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="bench-preflight-") as scratch:
                warnings.simplefilter("ignore")
                built = _trainer(track, first, dataclasses.replace(opts, console=None, out_dir=Path(scratch)),
                                 "preflight", 0)
        except Exception as err:  # Lightning's MisconfigurationException / ValueError on a bad combination
            raise SpecError(f"{spec.source}: track '{track.name}': trainer settings ({settings}) cannot run here: "
                            f"{str(err).splitlines()[0]}") from err
        if built.precision != t.precision:  # Lightning swaps e.g. 16-mixed for bf16-mixed on CPU with a warning
            raise SpecError(f"{spec.source}: track '{track.name}': precision {t.precision} is not available with "
                            f"{settings} (Lightning would run {built.precision} instead); ask for {built.precision} "
                            f"or run on a device that has {t.precision}")


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


def unit_config(track: TrackSpec, dm: BenchDataModule, label: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """Everything of one unit that changes its numbers, except the seed: hashed into ``config_hash``."""
    return {
        "track": track.name, "model": label, "model_args": model_args, "datamodule": dm.registry_name,
        "datamodule_args": dict(dm.hparams), "trainer": track.trainer.hashed(),
        "eval": track.eval.hashed(), "metrics": track.metrics,
    }


def _fit(trainer: pl.Trainer, model: BenchModule, dm: BenchDataModule, ckpt: UnitCheckpoint,
         console: Console | None) -> None:
    """Trains, resuming from the unit's checkpoint when there is one; an unreadable checkpoint (e.g. from an
    incompatible code version) is reported in one line, removed, and training starts from step 0."""
    if ckpt.path.is_file():
        try:
            torch.load(ckpt.path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated by a full disk, or written by an incompatible version
            if console is not None:
                console.print(f"  checkpoint {ckpt.path} is unreadable ({type(err).__name__}); training from step 0",
                              markup=False)
            ckpt.path.unlink(missing_ok=True)
    if not ckpt.path.is_file():
        trainer.fit(model, datamodule=dm)
        return
    if console is not None:
        console.print(f"  resuming from {ckpt.path}", markup=False)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt.path, weights_only=True)


def run_one(
    spec: SuiteSpec,
    track: TrackSpec,
    dm: BenchDataModule,
    model_name: str,
    model_args: dict[str, Any],
    seed: int,
    evaluator: Evaluator,
    opts: RunOptions,
    unit: Unit | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Trains and scores one unit (model, datamodule, seed), resuming from its checkpoint when there is one.

    Returns:
        Its result rows (one broken run is recorded as ``failed``, never raised) and the files it wrote
        (``weights``, ``samples``: paths relative to ``opts.out_dir``).

    Raises:
        KeyboardInterrupt, SystemExit: An interrupt (see :mod:`bench.interrupts`): nothing of the unit is kept
            but its last checkpoint.
    """
    dm_name = dm.registry_name
    config = unit_config(track, dm, model_name, model_args)
    if unit is None:
        unit = Unit(track.name, model_name, dm_name, seed, config_hash(config))
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if opts.threads_per_unit:
        torch.set_num_threads(opts.threads_per_unit)  # for this unit only (restored below)
    pl.seed_everything(seed, workers=True, verbose=False)
    model: BenchModule | None = None
    files: dict[str, str] = {}
    memory = PeakMemory("cuda" if opts.accelerator in ("gpu", "cuda") else "cpu")
    ckpt = UnitCheckpoint(unit.checkpoint_dir(opts.out_dir), track.trainer.checkpoint_every_n_batches)
    if not ckpt.path.is_file():  # a fresh start: no log rows of an earlier attempt
        shutil.rmtree(inside(opts.out_dir, "logs", track.name, f"{model_name}-{dm_name}", f"seed{seed}"),
                      ignore_errors=True)
    try:
        with memory:
            reference = model_name == REFERENCE_LABEL  # real images scored as samples, nothing trains
            if reference and global_rank() != 0:
                return [], {}
            if reference:
                model = reference_model(dm, track.eval.real_split, track.eval.n_fake)
            else:
                model = _build_model(model_name, model_args, dm, spec.source)
                trainer = _trainer(track, model, opts, f"{track.name}/{model_name}-{dm_name}", seed, ckpt, dm)
                _fit(trainer, model, dm, ckpt, opts.console)
                if not trainer.is_global_zero:  # DDP under torchrun / SLURM: rank 0 scores and writes the unit
                    return [], {}
            if model.diverged:
                status, message, scores = "diverged", model.divergence_message, []
            else:
                scores = evaluator.evaluate(model, dm, seed)
                bad = [s.metric for s in scores if not math.isfinite(s.value)]
                status, message = ("diverged", f"non-finite {', '.join(bad)}") if bad else ("ok", "")
        if status == "ok" and not reference:
            files["weights"] = f"weights/{unit.name}.pt"
            weights = inside(opts.out_dir, files["weights"])
            atomic_write(weights, model.save_weights, mode="wb")  # never a truncated .pt, even on a full disk
            if isinstance(model, ImageGenerator):
                files["samples"] = f"samples/{unit.name}.png"
                save_sample_grid(model, inside(opts.out_dir, files["samples"]), seed, dm, track.eval.real_split)
    except Exception as err:  # one broken run must not stop the suite; it is recorded with its reason
        disk = disk_error(err)
        if disk is not None:  # a full disk is not the model's failure: stop, keeping the complete units
            if isinstance(err, WriteError):
                raise
            # Lightning's checkpoint save copies a temporary file: the target is the second file name
            raise write_error(disk.filename2 or disk.filename or opts.out_dir, disk) from err
        status, message, scores, files = "failed", f"{type(err).__name__}: {err}".replace("\n", " ")[:500], [], {}
    wall = time.perf_counter() - start
    torch.set_num_threads(threads)
    return unit_rows(spec, track, unit, model_args, model, status, message, scores, wall, memory.peak_mb), files


def unit_rows(spec: SuiteSpec, track: TrackSpec, unit: Unit, model_args: dict[str, Any], model: BenchModule | None,
              status: str, message: str, scores: list[Any], wall: float = 0.0,
              peak_mb: float = 0.0) -> list[dict[str, Any]]:
    """A unit's result rows: one per score, or (no scores: a failed or diverged run) one per metric it would have
    had, with value NaN. ``model`` is None when it could not even be built (or ran on a worker that died)."""
    if model is not None:
        family = model.family
    else:
        registered = None if unit.label == REFERENCE_LABEL else MODELS.get(model_entry(unit.label, model_args)[0])
        family = REFERENCE_FAMILY if registered is None else registered.family
    params = model.num_parameters() if model is not None else None
    stage, operator = (model.fusion_stage, model.fusion_operator) if model is not None else ("", "")
    common = {
        "suite": spec.name, "track": track.name, "model": unit.label, "datamodule": unit.datamodule,
        "seed": unit.seed, "config_hash": unit.config_hash, "git_commit": git_commit(),
        "torch_version": torch.__version__, "lightning_version": package_version("lightning"),
        "family": family, "fusion_stage": stage, "fusion_operator": operator, "params": params,
        "timestamp": utc_now(), "wall_s": round(wall, 3), "peak_mem_mb": round(peak_mb, 1), "status": status,
        "message": message,
        "value": math.nan, "value_std": math.nan, "backbone": "", "backbone_sha256": "", "n_real": None, "n_fake": None, "resize": "",
        "split": track.eval.real_split, "protocol": "",
    }
    if scores:
        return [{**common, **dataclasses.asdict(s)} for s in scores]
    names = applicable_metrics(model, track.metrics) if model is not None else list(track.metrics)
    return [{**common, "metric": m, "higher_is_better": METRICS.get(split_metric_name(m)[0]).higher_is_better}
            for m in names]


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


def suite_units(spec: SuiteSpec, dms: dict[str, BenchDataModule]) -> list[tuple[Unit, TrackSpec, BenchDataModule, dict[str, Any]]]:
    """Every unit of ``spec`` in run order (track, datamodule, model, seed), with what running it needs; a track
    scored by feature metrics ends each datamodule with the ``real-data`` reference units (:mod:`bench.reference`)."""
    units = []
    for track in spec.tracks:
        for dm_name, dm_args in track.datamodules.items():
            dm = dms[_dm_key(dm_name, dm_args)]
            labels = list(track.models.items())
            reference = reference_model(dm, track.eval.real_split, track.eval.n_fake) if track.eval.reference else None
            if reference is not None and applicable_metrics(reference, track.metrics):
                labels.append((REFERENCE_LABEL, {}))
            for label, model_args in labels:
                chash = config_hash(unit_config(track, dm, label, model_args))
                for seed in spec.seeds:
                    units.append((Unit(track.name, label, dm.registry_name, seed, chash), track, dm, model_args))
    return units


def _forced(unit: Unit, rerun: bool | frozenset[str]) -> bool:
    return rerun is True or (isinstance(rerun, frozenset) and unit.label in rerun)


def run_suite(spec: SuiteSpec, opts: RunOptions) -> SuiteOutcome | None:
    """Runs every unit (track, datamodule, model, seed) of ``spec`` not yet complete in ``opts.out_dir`` and
    writes there: units/ (one completion record per unit), results.csv (rebuilt from the records after every
    unit), leaderboard.csv / leaderboard.md (mean ± std over seeds), suite.yaml (the resolved spec),
    environment.json, logs/ (Lightning CSV logs), weights/ (final weights of every ok run), samples/ (sample
    grids), checkpoints/ (while a unit trains) and accuracy_vs_noise.png when a track scores robustness.

    Under torchrun / SLURM with several processes (DDP of each unit), every rank trains each pending unit and
    rank 0 alone scores it and writes; the other ranks return None, as does a ``dry_run``.

    Raises:
        SuiteInterrupted: SIGINT / SIGTERM; the units complete before it are kept and the leaderboard of them
            is written first.
    """
    _quiet_lightning()
    torch.use_deterministic_algorithms(True, warn_only=True)
    models: dict[tuple[str, str], BenchModule] = {}
    dms, backbones = prepare(spec, opts.backbone_weights, models)
    check_trainer_settings(spec, opts, models)
    del models
    units = suite_units(spec, dms)
    out = opts.out_dir
    for unit, *_ in units:
        try:
            for part in ("units", "checkpoints", "weights", "samples", "logs"):
                inside(out, part, unit.track, unit.stem)
        except PathOutsideOutError as err:
            raise SpecError(f"{spec.source}: track {unit.track!r}, model {unit.label!r}: {err}") from err
    evaluators = build_evaluators(spec, backbones, opts)
    all_units = [u for u, *_ in units]
    for note in opts.notes if global_rank() == 0 else ():
        _printer(opts.console)(note)
    if opts.dry_run:
        say = _printer(opts.console)
        for i, unit in enumerate(all_units, 1):
            done = not _forced(unit, opts.rerun) and is_complete(unit, out)
            say(f"{unit.progress(i, len(all_units))}: {'complete, would be skipped' if done else 'would run'}")
        return None
    if global_rank() != 0:
        _follow_rank_zero(spec, units, evaluators, opts)
        return None
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    env = environment_info(opts.accelerator, opts.devices)
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    atomic_write_text(out / "environment.json", json.dumps(env, indent=2) + "\n")

    say = _printer(opts.console)
    pending = [(i, *entry) for i, entry in enumerate(units, 1) if _needs_run(entry[0], out, opts.rerun, i,
                                                                            len(units), say)]
    with interruptible() as flag:
        try:
            if opts.launcher == "ray":
                from bench.ray_launcher import run_units_on_ray

                run_units_on_ray(spec, pending, opts, all_units, say)
            else:
                for i, unit, track, dm, model_args in pending:
                    _run_local(spec, unit, track, dm, model_args, evaluators[track.name], opts, all_units,
                               unit.progress(i, len(units)),
                               say)
        except (KeyboardInterrupt, SystemExit) as err:
            if flag.signum is None:
                raise
            interrupted = err
        else:
            interrupted = None
    outcome = _write_outputs(spec, opts, env, all_units)
    if interrupted is not None:
        done = sum(is_complete(u, out) for u in all_units)
        raise SuiteInterrupted(
            flag.signum,
            f"interrupted by {flag.name}; {done} of {len(all_units)} units complete and kept (rerun the same "
            f"command to finish), leaderboard of them in {outcome.leaderboard_md}",
        ) from None
    return outcome


def _printer(console: Console | None) -> Any:
    """A one-line progress printer on ``console`` (messages are printed as they are: no rich markup)."""
    if console is None:
        return lambda *args, **kwargs: None
    return lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # one line, unwrapped


def global_rank() -> int:
    """This process's global rank when torchrun / SLURM launched several (Lightning's own reading of RANK,
    SLURM_PROCID, ...); 0 otherwise."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _follow_rank_zero(spec: SuiteSpec, units: list, evaluators: dict[str, Evaluator], opts: RunOptions) -> None:
    """A non-zero rank of a multi-process (DDP) run: trains every unit rank 0 trains, in the same order, and
    writes nothing — rank 0 decides which units are pending (the same test, on the same files, at start-up),
    scores them and writes every record and table."""
    for unit, track, dm, model_args in units:
        if _forced(unit, opts.rerun) or not is_complete(unit, opts.out_dir):
            rows, _ = run_one(spec, track, dm, unit.label, model_args, unit.seed, evaluators[track.name],
                              dataclasses.replace(opts, console=None), unit)
            if rows and rows[0]["status"] == "failed":
                sys.stderr.write(f"bench: rank {global_rank()}: {unit.name} failed: {rows[0]['message']}\n")


def build_evaluators(spec: SuiteSpec, backbones: dict, opts: RunOptions) -> dict[str, Evaluator]:
    """One evaluator per track, on the backbones :func:`prepare` built."""
    return {track.name: _evaluator(track, backbones, opts) for track in spec.tracks}


def _evaluator(track: TrackSpec, backbones: dict, opts: RunOptions) -> Evaluator:
    """The track's evaluator on the backbones :func:`prepare` built."""
    clip, classifier = (backbones.get(extra_backbone_key(name)) if name else None
                        for name in (track.eval.clip_backbone, track.eval.classifier_backbone))
    named = {n: backbones[extra_backbone_key(n)] for n in (split_metric_name(m)[1] for m in track.metrics)
             if n is not None and extra_backbone_key(n) in backbones}
    return Evaluator(track.eval, track.metrics, backbones.get(backbone_key(track.eval)), opts.cache_dir,
                     opts.console, clip_backbone=clip, classifier_backbone=classifier, backbones=named)


def _needs_run(unit: Unit, out: Path, rerun: bool | frozenset[str], i: int, total: int, say: Any) -> bool:
    if not _forced(unit, rerun) and is_complete(unit, out):
        say(f"{unit.progress(i, total)}: complete, skipped")
        return False
    return True


def _run_local(spec: SuiteSpec, unit: Unit, track: TrackSpec, dm: BenchDataModule, model_args: dict[str, Any],
               evaluator: Evaluator, opts: RunOptions, all_units: list[Unit], where: str, say: Any) -> None:
    """Runs one unit in this process under its lock and records it (see :mod:`bench.units`)."""
    out = opts.out_dir
    lock = UnitLock(unit, out)
    if not lock.acquire():
        say(f"{where}: running in another process, left to it")
        return
    try:
        forced = _forced(unit, opts.rerun)
        if not forced and is_complete(unit, out):  # finished by another process meanwhile
            say(f"{where}: complete, skipped")
            return
        if forced:
            shutil.rmtree(unit.checkpoint_dir(out), ignore_errors=True)
        say(where)
        rows, files = run_one(spec, track, dm, unit.label, model_args, unit.seed, evaluator, opts, unit)
        record_unit(unit, out, rows, files)
    finally:
        lock.release()
    say(f"  {result_line(track, rows)}")
    _rebuild_results(out, all_units)


def result_line(track: TrackSpec, rows: list[dict[str, Any]]) -> str:
    """A finished unit in one line: its primary metric (or its status and reason) and its wall time."""
    first = rows[0]
    if first["status"] != "ok":
        return f"{first['status']}: {first['message']}"
    primary = next((r for r in rows if r["metric"] == track.primary_metric), first)
    return f"ok: {primary['metric']} {primary['value']:.4g}, {first['wall_s']:.1f} s"


def record_unit(unit: Unit, out: Path, rows: list[dict[str, Any]], files: dict[str, str]) -> None:
    """Writes the unit's completion record, then drops its training checkpoints (its final weights are kept)."""
    write_record(unit, out, rows, files)
    shutil.rmtree(unit.checkpoint_dir(out), ignore_errors=True)


_PROCESS_CACHE: dict[str, Any] = {}


def execute_unit(spec: SuiteSpec, unit: Unit, opts: RunOptions) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Runs one unit of ``spec`` in this (worker) process: builds its datamodule, backbones and evaluator (kept
    for later units of the same track in this process) and calls :func:`run_one`. Used by the Ray launcher."""
    _quiet_lightning()
    torch.use_deterministic_algorithms(True, warn_only=True)
    track = next(t for t in spec.tracks if t.name == unit.track)
    dm_args = next(a for name, a in track.datamodules.items() if name == unit.datamodule)
    key = f"{spec.source}:{track.name}:{_dm_key(unit.datamodule, dm_args)}"
    if key not in _PROCESS_CACHE:
        one = dataclasses.replace(spec, tracks=(dataclasses.replace(
            track, datamodules={unit.datamodule: dm_args}, models={unit.label: track.models[unit.label]}),))
        dms, backbones = prepare(one, opts.backbone_weights)
        _PROCESS_CACHE[key] = (dms[_dm_key(unit.datamodule, dm_args)], build_evaluators(one, backbones, opts)[track.name])
    dm, evaluator = _PROCESS_CACHE[key]
    return run_one(spec, track, dm, unit.label, track.models[unit.label], unit.seed, evaluator, opts, unit)


def _rebuild_results(out: Path, units: list[Unit]) -> list[dict[str, Any]]:
    """results.csv rebuilt from the unit records, under the folder's results lock."""
    with results_lock(out):
        rows = collect_rows(out, units)
        write_results(rows, out / "results.csv")
    return rows


def _write_outputs(spec: SuiteSpec, opts: RunOptions, env: dict[str, Any], units: list[Unit]) -> SuiteOutcome:
    """results.csv, leaderboard.csv / .md / .html (and the figures) from the complete units."""
    out = opts.out_dir
    with results_lock(out):
        rows = collect_rows(out, units)
        results_csv = out / "results.csv"
        write_results(rows, results_csv)
        results = results_frame(rows)
        table = aggregate(results, spec)
        figure = noise_figure(results, out) if len(results) else None
        markdown = to_markdown(table, results, spec, opts.command, env, sample_grids(out, spec), figure)
        lb_csv, lb_md = write_leaderboard(table, markdown, out)
        write_html_leaderboard(out, spec, table, results, opts.command, env, sample_grids(out, spec))
    runs = results.drop_duplicates(["track", "model", "datamodule", "seed"])
    return SuiteOutcome(
        out_dir=out, results_csv=results_csv, leaderboard_csv=lb_csv, leaderboard_md=lb_md,
        status_counts=runs["status"].value_counts().to_dict(),
        leaderboard=json.loads(table.to_json(orient="records")),
    )
