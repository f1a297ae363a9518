"""Typed suite specifications, loaded from YAML (``yaml.safe_load``) and validated before any work starts.

A suite is a list of *tracks*; each track is a matrix of models × datamodules, run for every seed of the suite,
scored by the track's metrics and ranked by its primary metric::

    name: quick
    description: ...
    seeds: [0, 1, 2]
    trainer: {max_epochs: 5}                 # defaults for every track
    eval: {backbone: efficientnet-lite0, n_fake: 358}
    tracks:
      - name: generation
        primary_metric: fid
        metrics: [fid, kid, mse, psnr, ssim]  # a metric a model cannot be scored on is skipped for it
        datamodules: {digits: {image_size: 16}}
        models: {dcgan: {latent_dim: 32}, vae: {}}
        trainer: {max_epochs: 20}            # overrides the suite's trainer for this track

A model entry may carry a label of its own and name the registered model with ``model:``, so that one model can
appear twice with different arguments (e.g. a sampling option)::

        models:
          text2image-gpt: {}
          text2image-gpt-cfg3: {model: text2image-gpt, guidance_scale: 3.0}

Names are checked against the registries; nothing in a suite file can name code outside them.
"""

from __future__ import annotations

from bench.errors import InputError
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.registry import Registry, UnknownNameError


class SpecError(InputError):
    """A suite file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class TrainerSpec:
    """Lightning ``Trainer`` settings a suite may set.

    Attributes:
        max_epochs: Training epochs.
        limit_train_batches: Fraction (float) or number (int) of training batches per epoch.
        limit_val_batches: Fraction or number of validation batches per epoch.
        gradient_clip_val: Gradient-norm clipping (automatic optimization only), or None.
        precision: Lightning precision: ``32-true`` (``32``), ``16-mixed``, ``bf16-mixed`` or ``64-true``.
        deterministic: ``Trainer(deterministic=...)``; True (default) makes reruns bit-identical, False lets GPU
            users trade that for speed. Recorded in every row's config hash when False.
        accumulate_grad_batches: Gradient accumulation (automatic optimization only).
        strategy: Lightning strategy for several devices or nodes (``auto``, ``ddp``, ...).
        num_nodes: Nodes of one unit's training (multi-node DDP under torchrun / SLURM).
        checkpoint_every_n_batches: Training batches between resumable checkpoints, counted over epochs (0: at
            every epoch end); one more is always written when training ends. Does not change any number, so it
            is not part of the config hash.
    """

    max_epochs: int = 1
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    gradient_clip_val: float | None = None
    precision: str = "32-true"
    deterministic: bool = True
    accumulate_grad_batches: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    checkpoint_every_n_batches: int = 100

    def __post_init__(self) -> None:
        if self.precision in PRECISION_ALIASES:
            object.__setattr__(self, "precision", PRECISION_ALIASES[self.precision])

    def check(self, where: str, source: str) -> None:
        """Value checks beyond the types (the type checks are :func:`_build`'s).

        Raises:
            SpecError: naming ``source`` and the key, listing what is accepted.
        """
        if self.precision not in PRECISIONS:
            raise SpecError(f"{source}: key '{where}.precision': {self.precision!r} is not accepted; valid: "
                            f"{', '.join(PRECISIONS)}")
        for name in ("accumulate_grad_batches", "num_nodes"):
            if getattr(self, name) < 1:
                raise SpecError(f"{source}: key '{where}.{name}' must be >= 1, got {getattr(self, name)!r}")
        if self.checkpoint_every_n_batches < 0:
            raise SpecError(f"{source}: key '{where}.checkpoint_every_n_batches' must be >= 0 (0: only at epoch "
                            f"ends), got {self.checkpoint_every_n_batches!r}")
        strategies = available_strategies()
        if self.strategy not in strategies:
            raise SpecError(f"{source}: key '{where}.strategy': {self.strategy!r} is not accepted; valid: "
                            f"{', '.join(strategies)}")

    def hashed(self) -> dict[str, Any]:
        """The settings that change a run's numbers, for its config hash: every field except the checkpoint
        interval (resuming gives the same numbers, tested), and the keys added after the first published runs
        only where they differ from their defaults, so that the hashes of those runs stay valid."""
        data = dataclasses.asdict(self)
        data.pop("checkpoint_every_n_batches")
        for name in _LATER_KEYS:
            if data[name] == _TRAINER_DEFAULTS[name]:
                data.pop(name)
        return data


#: Precisions a suite may ask for (Lightning's names).
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "64-true")
PRECISION_ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}
_LATER_KEYS = ("precision", "deterministic", "accumulate_grad_batches", "strategy", "num_nodes")
_TRAINER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainerSpec)}


def available_strategies() -> list[str]:
    """``auto`` and the strategy names Lightning registers (``ddp``, ``ddp_spawn``, ``fsdp``, ...)."""
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *sorted(StrategyRegistry.available_strategies())]


@dataclass(frozen=True)
class EvalSpec:
    """How generated and real data are scored.

    Attributes:
        backbone: Registered backbone for feature metrics (FID, KID).
        backbone_size: Input resolution the backbone resizes to (recorded as its ``resize``); None keeps the
            backbone's own (224 for efficientnet-lite0).
        resize: Resize mode (``tf1-bilinear``, ``bilinear``, ``clean``; see :mod:`bench.backbones.resize`); None
            keeps the backbone's default. Recorded in every row's ``resize`` as ``<mode>-<size>``.
        n_fake: Generated images per run.
        real_split: Split whose images are the reference for feature metrics and the inputs for
            reconstruction and classification metrics.
        batch_size: Batch size of sampling and feature extraction.
        kid_subsets: KID subsets. kid_subset_size: KID subset size (clamped to the sample sizes).
        is_splits: Inception Score splits.
        nll_samples: Importance samples per image of the ``nll-bpd`` bound.
        nll_images: Score ``nll-bpd`` on the first this-many images of ``real_split`` (0: all of them); the
            bound costs ``nll_samples`` decoder passes per image. Recorded as the row's ``n_real``.
        clip_backbone: Registered image–text backbone (``similarity(images, captions)``) that scores
            ``clip-score`` / ``clip-score-real``, e.g. ``clip-indomain-fashion`` offline or ``clip-vit-b-32``;
            required when the track lists one of them. Its weights are its own default (``--backbone-weights``
            only replaces ``backbone``'s).
        classifier_backbone: Registered classifier backbone (``classify(images) -> logits``) that scores
            ``coherence`` / ``coherence-real``, e.g. ``classifier-indomain-fashion``; required when the track lists
            one of them.

    Caption-conditioned metrics (``cross-fid``, ``cross-kid``, ``clip-score``, ``coherence``) generate one image
    from each caption of the first ``n_fake`` examples of ``real_split`` (all of them if it has fewer).
    """

    backbone: str = "efficientnet-lite0"
    backbone_size: int | None = None
    resize: str | None = None
    n_fake: int = 1000
    real_split: str = "test"
    batch_size: int = 100
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    nll_samples: int = 64
    nll_images: int = 0
    clip_backbone: str | None = None
    classifier_backbone: str | None = None


@dataclass(frozen=True)
class TrackSpec:
    """One models × datamodules matrix with its metrics (see the module docstring)."""

    name: str
    primary_metric: str
    metrics: tuple[str, ...]
    datamodules: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]
    trainer: TrainerSpec = field(default_factory=TrainerSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)


@dataclass(frozen=True)
class SuiteSpec:
    """A whole suite: its tracks, the seeds every run is repeated with, and where it was read from."""

    name: str
    description: str
    seeds: tuple[int, ...]
    tracks: tuple[TrackSpec, ...]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the resolved spec written next to results, and for config hashes)."""
        return dataclasses.asdict(self)

    def with_overrides(
        self,
        models: list[str] | None = None,
        datamodule: str | None = None,
        seeds: list[int] | None = None,
        max_epochs: int | None = None,
        limit_batches: float | None = None,
        trainer: dict[str, Any] | None = None,
    ) -> SuiteSpec:
        """The suite restricted/modified by command-line options.

        Args:
            models: Keep only these models (each must be in the suite).
            datamodule: Run every track on this datamodule instead of its own (keeping its args if it had it).
            seeds: Replace the seeds.
            max_epochs: Replace every track's ``max_epochs``.
            limit_batches: Replace every track's ``limit_train_batches`` and ``limit_val_batches``.
            trainer: Replace these :class:`TrainerSpec` fields of every track (``--precision``, ``--strategy``,
                ``--num-nodes``, ``--accumulate-grad-batches``, ``--no-deterministic``, ``--checkpoint-every``).

        Raises:
            UnknownNameError: If a model is not in this suite.
            SpecError: If ``seeds`` repeats a seed, or a ``trainer`` value is not accepted.
        """
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise SpecError(f"--seeds repeats a seed: {seeds!r}")
        tracks = []
        trainer_overrides = {k: v for k, v in (trainer or {}).items() if v is not None}
        if models is not None:
            in_suite = sorted({m for t in self.tracks for m in t.models})
            for m in models:
                if m not in in_suite:
                    raise UnknownNameError(f"model {m!r} is not in suite {self.name!r}; its models: {', '.join(in_suite)}")
        for track in self.tracks:
            kept = {m: a for m, a in track.models.items() if models is None or m in models}
            if not kept:
                continue
            dms = track.datamodules if datamodule is None else {datamodule: track.datamodules.get(datamodule, {})}
            trainer = track.trainer
            if max_epochs is not None:
                trainer = dataclasses.replace(trainer, max_epochs=max_epochs)
            if limit_batches is not None:
                trainer = dataclasses.replace(trainer, limit_train_batches=limit_batches, limit_val_batches=limit_batches)
            if trainer_overrides:
                trainer = dataclasses.replace(trainer, **trainer_overrides)
                trainer.check("trainer", "command line")
            tracks.append(dataclasses.replace(track, models=kept, datamodules=dms, trainer=trainer))
        return dataclasses.replace(self, tracks=tuple(tracks), seeds=tuple(seeds) if seeds else self.seeds)


# --------------------------------------------------------------------------------------------------------- loading
def _check_type(value: Any, tp: Any, where: str, source: str) -> Any:
    """Checks ``value`` against a simple annotation (int, float, str, bool, X | None); ints pass as floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise SpecError(f"{source}: key '{where}' must be {getattr(tp, '__name__', tp)}, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    """A flat dataclass (TrainerSpec, EvalSpec) from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{source}: key '{where}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SpecError(f"{source}: unknown key '{where}.{unknown[0]}'; valid keys: {', '.join(names)}")
    return cls(**{k: _check_type(v, hints[k], f"{where}.{k}", source) for k, v in data.items()})


def _trainer_spec(data: Any, where: str, source: str) -> TrainerSpec:
    trainer = _build(TrainerSpec, data, where, source)
    trainer.check(where, source)
    return trainer


#: The key of a model entry that names the registered model when the entry's own name is a label.
MODEL_KEY = "model"


def model_entry(label: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(registered model name, model arguments) of a track's model entry ``label: args`` (see the module docstring)."""
    args = dict(args)
    return str(args.pop(MODEL_KEY, label)), args


def _named_args(
    data: Any, where: str, source: str, registry: Registry, allow_label: bool = False
) -> dict[str, dict[str, Any]]:
    """``{name: {arg: value}}`` (or a list of names) with every name registered.

    With ``allow_label``, an entry may be ``label: {model: <registered name>, ...}`` instead.
    """
    if isinstance(data, list):
        data = {name: {} for name in data}
    if not isinstance(data, dict) or not data:
        raise SpecError(f"{source}: key '{where}' must be a non-empty mapping of {registry.kind} names to arguments")
    out = {}
    for name, args in data.items():
        if args is not None and not isinstance(args, dict):
            raise SpecError(f"{source}: key '{where}.{name}' must be a mapping of arguments, got {args!r}")
        args = dict(args or {})
        registered = args.get(MODEL_KEY, name) if allow_label else name
        if not isinstance(registered, str) or registered not in registry:
            key = f"{where}.{name}.{MODEL_KEY}" if registered is not name else f"{where}.{name}"
            raise SpecError(
                f"{source}: key '{key}': unknown {registry.kind} {registered!r}; valid {registry.kind}s: "
                f"{', '.join(registry.names())}"
            )
        out[name] = args
    return out


def check_eval_backbones(evals: EvalSpec, metrics: list[str] | tuple[str, ...], where: str, source: str) -> None:
    """Checks the extra backbones of an ``eval`` block: each one the track's metrics need is given, and every one
    given is registered.

    Args:
        evals: The track's eval settings. metrics: Its metric names (registered). where: Key of the eval block
            (e.g. ``tracks[0].eval``). source: The suite file.

    Raises:
        SpecError: A needed ``clip_backbone`` / ``classifier_backbone`` is missing, or a name is not registered.
    """
    from bench.backbones import BACKBONES
    from bench.metrics import METRICS
    from bench.metrics.base import BACKBONE_FIELD_OF_KIND

    for fld in sorted(set(BACKBONE_FIELD_OF_KIND.values())):
        name = getattr(evals, fld)
        needing = [m for m in metrics if BACKBONE_FIELD_OF_KIND.get(METRICS.get(m).input_kind) == fld]
        if needing and not name:
            raise SpecError(
                f"{source}: key '{where}.{fld}' is missing: metrics {needing} are scored with it; set it to a "
                f"registered backbone (`bench list backbones`)"
            )
        if name and name not in BACKBONES:
            raise SpecError(
                f"{source}: key '{where}.{fld}': unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES.names())}"
            )


def parse_suite(data: Any, source: str) -> SuiteSpec:
    """Validates parsed YAML and builds the :class:`SuiteSpec`.

    Raises:
        SpecError: Naming ``source`` and the offending key.
    """
    from bench.backbones import BACKBONES
    from bench.metrics import METRICS
    from datamodules import DATAMODULES
    from models import MODELS

    if not isinstance(data, dict):
        raise SpecError(f"{source}: the file must hold a mapping with keys name, seeds, tracks")
    allowed = {"name", "description", "seeds", "trainer", "eval", "tracks"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"{source}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(allowed))}")
    for key in ("name", "seeds", "tracks"):
        if key not in data:
            raise SpecError(f"{source}: missing key '{key}'")
    name = _check_type(data["name"], str, "name", source)
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SpecError(f"{source}: key 'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{source}: key 'seeds' repeats a seed: {seeds!r}")
    base_trainer = data.get("trainer") or {}
    base_eval = data.get("eval") or {}
    for key, value in (("trainer", base_trainer), ("eval", base_eval)):
        if not isinstance(value, dict):
            raise SpecError(f"{source}: key '{key}' must be a mapping")
    if not isinstance(data["tracks"], list) or not data["tracks"]:
        raise SpecError(f"{source}: key 'tracks' must be a non-empty list")
    tracks = []
    track_keys = {"name", "primary_metric", "metrics", "datamodules", "models", "trainer", "eval"}
    for i, raw in enumerate(data["tracks"]):
        where = f"tracks[{i}]"
        if not isinstance(raw, dict):
            raise SpecError(f"{source}: key '{where}' must be a mapping")
        unknown = sorted(set(raw) - track_keys)
        if unknown:
            raise SpecError(f"{source}: unknown key '{where}.{unknown[0]}'; valid keys: {', '.join(sorted(track_keys))}")
        for key in ("name", "primary_metric", "metrics", "datamodules", "models"):
            if key not in raw:
                raise SpecError(f"{source}: missing key '{where}.{key}'")
        metrics = raw["metrics"]
        if not isinstance(metrics, list) or not metrics:
            raise SpecError(f"{source}: key '{where}.metrics' must be a non-empty list of metric names")
        for m in metrics:
            if m not in METRICS:
                raise SpecError(f"{source}: key '{where}.metrics': unknown metric {m!r}; valid metrics: {', '.join(METRICS.names())}")
        if raw["primary_metric"] not in metrics:
            raise SpecError(f"{source}: key '{where}.primary_metric' must be one of the track's metrics {metrics}")
        evals = _build(EvalSpec, {**base_eval, **(raw.get("eval") or {})}, f"{where}.eval", source)
        if evals.backbone not in BACKBONES:
            raise SpecError(
                f"{source}: key '{where}.eval.backbone': unknown backbone {evals.backbone!r}; valid backbones: {', '.join(BACKBONES.names())}"
            )
        if evals.real_split not in ("train", "val", "test"):
            raise SpecError(f"{source}: key '{where}.eval.real_split' must be train, val or test")
        check_eval_backbones(evals, metrics, f"{where}.eval", source)
        tracks.append(
            TrackSpec(
                name=_check_type(raw["name"], str, f"{where}.name", source),
                primary_metric=raw["primary_metric"],
                metrics=tuple(metrics),
                datamodules=_named_args(raw["datamodules"], f"{where}.datamodules", source, DATAMODULES),
                models=_named_args(raw["models"], f"{where}.models", source, MODELS, allow_label=True),
                trainer=_trainer_spec({**base_trainer, **(raw.get("trainer") or {})}, f"{where}.trainer", source),
                eval=evals,
            )
        )
    return SuiteSpec(
        name=name,
        description=str(data.get("description", "")),
        seeds=tuple(seeds),
        tracks=tuple(tracks),
        source=source,
    )


def load_suite_file(path: str | Path) -> SuiteSpec:
    """Reads and validates a suite YAML file (``yaml.safe_load``).

    Raises:
        SpecError: If the file cannot be read, is not valid YAML, or fails validation.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read suite file ({err.strerror})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', None) or str(err).splitlines()[0]}") from err
    return parse_suite(data, str(path))
