"""Typed suite specifications, loaded from YAML (a ``yaml.SafeLoader`` with limits, :mod:`bench.suite_yaml`) and validated before any work starts.

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

Names are checked against the registries; nothing in a suite file can name code outside them. The checks here
need no heavy import (names come from :mod:`bench.catalog`), so a bad suite file fails in well under a second;
the runner's preflight then builds everything the suite names before any training.

Bounds (documented maxima, so a typo cannot ask for 10^23 epochs or a 100000-pixel image): see :data:`BOUNDS`
and :data:`MAX_IMAGE_SIDE`; every float must be finite; names that become paths (the suite's, tracks', model
labels) must match :data:`SAFE_NAME`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import catalog, loggers
from bench.errors import SpecError
from bench.registry import UnknownNameError
from bench.suite_yaml import load_yaml


#: Names that become parts of paths (suite, track, model label): letters, digits, ``-`` and ``_``, at most 64.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Largest seed (seeds feed numpy and Lightning, which take unsigned 32-bit seeds).
MAX_SEED = 2**32 - 1
#: Largest image side a datamodule or model argument may ask for (``image_size``, ``image_shape``).
MAX_IMAGE_SIDE = 1024
#: Largest integer any model or datamodule argument may hold (sizes beyond it are typos; the runner also
#: refuses a model whose parameters would not fit in memory before building it).
MAX_ARG_INT = 10**7
#: Model and datamodule arguments that are sizes or counts, so must be at least 1 (other integers may be 0).
POSITIVE_ARGS = frozenset({
    "batch_size", "channels", "d_model", "depth", "dim", "heads", "image_shape", "image_size", "latent_dim", "levels",
    "mapping_layers", "max_channels", "n_critic", "n_embd", "n_head", "n_heads", "n_layer", "n_layers",
    "num_classes", "num_codes", "num_steps", "patch_size", "segment_len", "steps_per_phase", "token_size",
    "vocab_size", "width",
})
#: (minimum, maximum) of the numeric trainer and eval settings; None: no bound on that side.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "max_epochs": (1, 10_000),
    "gradient_clip_val": (0, None),
    "accumulate_grad_batches": (1, 10_000),
    "num_nodes": (1, 10_000),
    "checkpoint_every_n_batches": (0, 10**9),
    "backbone_size": (32, MAX_IMAGE_SIDE),
    "n_fake": (2, 1_000_000),
    "batch_size": (1, 100_000),
    "kid_subsets": (1, 10_000),
    "kid_subset_size": (2, 1_000_000),
    "is_splits": (1, 10_000),
    "nll_samples": (1, 100_000),
    "nll_images": (0, 10_000_000),
}
#: Largest number of batches ``limit_train_batches`` / ``limit_val_batches`` may name.
MAX_BATCHES = 10**8


def check_safe_name(value: Any, where: str, source: str) -> str:
    """``value`` if it is a :data:`SAFE_NAME` string, else a SpecError naming ``where``."""
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise SpecError(f"{source}: key '{where}': {value!r} is not accepted as a name (it becomes part of file "
                        f"paths): 1-64 letters, digits, '-' or '_', starting with a letter or digit")
    return value


def check_bounds(obj: Any, where: str, source: str) -> None:
    """Checks the :data:`BOUNDS` of a TrainerSpec's or EvalSpec's numeric fields."""
    for fld in dataclasses.fields(obj):
        value = getattr(obj, fld.name)
        if fld.name not in BOUNDS or value is None:
            continue
        low, high = BOUNDS[fld.name]
        if (low is not None and value < low) or (high is not None and value > high):
            accepted = f">= {low}" if high is None else f"between {low} and {high}"
            raise SpecError(f"{source}: key '{where}.{fld.name}' must be {accepted}, got {value!r}")


def _check_limit_batches(value: float, where: str, source: str, allow_zero: bool) -> None:
    """A Lightning ``limit_*_batches``: a fraction in (0, 1], or a whole number of batches (0 only where
    ``allow_zero``: no validation)."""
    if isinstance(value, float) and 0 < value <= 1:
        return
    low = 0 if allow_zero else 1
    if value == int(value) and low <= value <= MAX_BATCHES:
        return
    raise SpecError(f"{source}: key '{where}' must be a fraction in (0, 1] or a whole number of batches between "
                    f"{low} and {MAX_BATCHES}, got {value!r}")


def check_seeds(seeds: Any, where: str, source: str) -> tuple[int, ...]:
    """A non-empty list of distinct integer seeds in [0, :data:`MAX_SEED`], else a SpecError."""
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SpecError(f"{source}: key '{where}' must be a non-empty list of integers, got {seeds!r}")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise SpecError(f"{source}: key '{where}': seed {bad[0]} is out of range; seeds are integers from 0 to {MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{source}: key '{where}' repeats a seed: {list(seeds)!r}")
    return tuple(seeds)


def check_arg_values(value: Any, where: str, source: str, name: str = "") -> None:
    """Checks a model or datamodule argument (recursively through lists and mappings): floats finite, integers
    in [0, :data:`MAX_ARG_INT`] (at least 1 for the sizes and counts of :data:`POSITIVE_ARGS`), image sides
    (``image_size``, ``image_shape``) at most :data:`MAX_IMAGE_SIDE`."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{source}: key '{where}' must be a finite number, got {value!r}")
        return
    if isinstance(value, int):
        high = MAX_IMAGE_SIDE if name in ("image_size", "image_shape") else MAX_ARG_INT
        low = 1 if name in POSITIVE_ARGS else 0
        if not low <= value <= high:
            raise SpecError(f"{source}: key '{where}' must be an integer between {low} and {high}, got {value!r}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_arg_values(item, f"{where}[{i}]", source, name)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            check_arg_values(item, f"{where}.{k}", source, str(k))
        return
    raise SpecError(f"{source}: key '{where}': {type(value).__name__} values are not accepted")


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
        logger: Experiment trackers, comma-separated (or a YAML list) from :data:`bench.loggers.LOGGERS`: ``csv``
            (always on), ``tensorboard``, ``mlflow``, ``wandb`` (offline); ``--logger`` replaces it. Changes no
            number, so it is not part of the config hash.
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
    logger: str = field(default="csv", repr=False)  # not in the leaderboard's protocol line either

    def __post_init__(self) -> None:
        if self.precision in PRECISION_ALIASES:
            object.__setattr__(self, "precision", PRECISION_ALIASES[self.precision])
        object.__setattr__(self, "logger", loggers.normalize_logger_names(self.logger))

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
        check_bounds(self, where, source)
        try:
            loggers.check_logger_names(self.logger, packages=False)  # installed: checked by the CLI after --logger
        except loggers.LoggerNameError as err:
            raise SpecError(f"{source}: key '{where}.logger': {err}") from None
        for name in ("limit_train_batches", "limit_val_batches"):
            _check_limit_batches(getattr(self, name), f"{where}.{name}", source, name == "limit_val_batches")
        if self.strategy == "auto":  # the default; the others need Lightning's registry (a heavy import)
            return
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
        data.pop("logger")  # experiment trackers change no number
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

        reference: Also score the ``real-data`` reference row (:mod:`bench.reference`: ``n_fake`` real images of
            a split disjoint from ``real_split`` through the same evaluation) when the track has feature metrics.

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
    reference: bool = True

    def hashed(self) -> dict[str, Any]:
        """The settings that change a run's numbers, for its config hash: every field but ``reference`` (whether
        the track also scores the ``real-data`` reference row changes no model's numbers)."""
        data = dataclasses.asdict(self)
        data.pop("reference")
        return data


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
        datamodule_params: frozenset[str] | None = None,
    ) -> SuiteSpec:
        """The suite restricted/modified by command-line options.

        Args:
            models: Keep only these models (each must be in the suite).
            datamodule: Run every track on this datamodule instead of its own, with its arguments if the track
                lists it, else the arguments of the track's own datamodule that this one accepts (see
                :func:`carried_datamodule_args`; ``datamodule_params`` are the names it accepts).
            seeds: Replace the seeds.
            max_epochs: Replace every track's ``max_epochs``.
            limit_batches: Replace every track's ``limit_train_batches`` and ``limit_val_batches``.
            trainer: Replace these :class:`TrainerSpec` fields of every track (``--precision``, ``--strategy``,
                ``--num-nodes``, ``--accumulate-grad-batches``, ``--no-deterministic``, ``--checkpoint-every``).

        Raises:
            UnknownNameError: If a model is not in this suite.
            SpecError: If ``seeds`` repeats a seed, or a ``trainer`` value is not accepted.
        """
        if seeds is not None:
            check_seeds(seeds, "--seeds", "command line")
        tracks = []
        trainer_overrides = {k: v for k, v in (trainer or {}).items() if v is not None}
        if models is not None:
            in_suite = sorted({m for t in self.tracks for m in t.models})
            for m in models:
                if m not in in_suite and m != catalog.REFERENCE_LABEL:
                    raise UnknownNameError(f"model {m!r} is not in suite {self.name!r}; its models: "
                                           f"{', '.join(in_suite)} (and {catalog.REFERENCE_LABEL}, the reference row)")
        for track in self.tracks:
            kept = {m: a for m, a in track.models.items() if models is None or m in models}
            # `--models real-data` keeps a track for its reference row alone (added to a published leaderboard
            # with `bench report`, without training its models again)
            if not kept and not (models is not None and catalog.REFERENCE_LABEL in models and track.eval.reference):
                continue
            dms = (track.datamodules if datamodule is None else
                   {datamodule: carried_datamodule_args(track, datamodule, datamodule_params)[0]})
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


def carried_datamodule_args(track: TrackSpec, datamodule: str, accepted: frozenset[str] | None
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The arguments ``--datamodule NAME`` runs ``track`` with, and those it drops.

    The track's own arguments for NAME if it lists NAME; otherwise the arguments of the track's (first)
    datamodule whose names NAME accepts (so ``image_size`` or ``batch_size`` are not silently reset to NAME's
    defaults), the others dropped. With ``accepted`` None, nothing is carried over.

    Returns:
        (arguments used, arguments dropped).
    """
    if datamodule in track.datamodules:
        return dict(track.datamodules[datamodule]), {}
    own = next(iter(track.datamodules.values()), {})
    kept = {k: v for k, v in own.items() if accepted is not None and k in accepted}
    return kept, {k: v for k, v in own.items() if k not in kept}


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
    if tp is float and not math.isfinite(value):
        raise SpecError(f"{source}: key '{where}' must be a finite number, got {value!r}")
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
    if isinstance(data, dict) and isinstance(data.get("logger"), list):  # `logger: [csv, tensorboard]`
        data = {**data, "logger": ",".join(map(str, data["logger"]))}
    trainer = _build(TrainerSpec, data, where, source)
    trainer.check(where, source)
    return trainer


#: The key of a model entry that names the registered model when the entry's own name is a label.
MODEL_KEY = "model"


def model_entry(label: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(registered model name, model arguments) of a track's model entry ``label: args`` (see the module docstring)."""
    args = dict(args)
    return str(args.pop(MODEL_KEY, label)), args


def _named_args(data: Any, where: str, source: str, kind: str, allow_label: bool = False) -> dict[str, dict[str, Any]]:
    """``{name: {arg: value}}`` (or a list of names) with every name registered (:mod:`bench.catalog`) and every
    argument value within :func:`check_arg_values`' bounds.

    With ``allow_label``, an entry may be ``label: {model: <registered name>, ...}`` instead; the label must be
    a :data:`SAFE_NAME`.
    """
    if isinstance(data, list):
        if len(set(map(repr, data))) != len(data):
            raise SpecError(f"{source}: key '{where}' lists a {kind} twice")
        data = {name: {} for name in data}
    if not isinstance(data, dict) or not data:
        raise SpecError(f"{source}: key '{where}' must be a non-empty mapping of {kind} names to arguments")
    known = catalog.registered(kind)
    out = {}
    for name, args in data.items():
        if args is not None and not isinstance(args, dict):
            raise SpecError(f"{source}: key '{where}.{name}' must be a mapping of arguments, got {args!r}")
        args = dict(args or {})
        registered = args.get(MODEL_KEY, name) if allow_label else name
        if not isinstance(registered, str) or registered not in known:
            key = f"{where}.{name}.{MODEL_KEY}" if registered is not name else f"{where}.{name}"
            raise SpecError(
                f"{source}: key '{key}': unknown {kind} {registered!r}; valid {kind}s: {', '.join(sorted(known))}"
            )
        check_safe_name(name, where, source)
        if allow_label and name == catalog.REFERENCE_LABEL:
            raise SpecError(f"{source}: key '{where}.{name}': the label {name!r} is reserved for the reference row "
                            f"of real images (bench.reference); choose another label")
        for arg, value in args.items():
            if not isinstance(arg, str) or not arg.isidentifier():
                raise SpecError(f"{source}: key '{where}.{name}': argument name {arg!r} is not an identifier")
            check_arg_values(value, f"{where}.{name}.{arg}", source, arg)
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
    for fld in sorted(set(catalog.METRIC_BACKBONE_FIELD.values())):
        name = getattr(evals, fld)
        needing = [m for m in metrics if catalog.metric_backbone_field(m) == fld]
        if needing and not name:
            raise SpecError(
                f"{source}: key '{where}.{fld}' is missing: metrics {needing} are scored with it; set it to a "
                f"registered backbone (`bench list backbones`)"
            )
        if name and not catalog.is_registered("backbone", name):
            raise SpecError(
                f"{source}: key '{where}.{fld}': unknown backbone {name!r}; valid backbones: "
                f"{', '.join(catalog.names('backbone'))}"
            )


def parse_suite(data: Any, source: str) -> SuiteSpec:
    """Validates parsed YAML and builds the :class:`SuiteSpec`.

    Raises:
        SpecError: Naming ``source`` and the offending key.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the file must hold a mapping with keys name, seeds, tracks")
    allowed = {"name", "description", "seeds", "trainer", "eval", "tracks"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"{source}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(allowed))}")
    for key in ("name", "seeds", "tracks"):
        if key not in data:
            raise SpecError(f"{source}: missing key '{key}'")
    name = check_safe_name(data["name"], "name", source)
    seeds = check_seeds(data["seeds"], "seeds", source)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{source}: key 'description' must be a string, got {type(description).__name__}")
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
            base, _, named = m.partition("@") if isinstance(m, str) else (m, "", "")
            if not catalog.is_registered("metric", base):
                raise SpecError(f"{source}: key '{where}.metrics': unknown metric {m!r}; valid metrics: "
                                f"{', '.join(catalog.names('metric'))} (optionally as <metric>@<backbone>)")
            if "@" in m and not catalog.is_registered("backbone", named):
                raise SpecError(f"{source}: key '{where}.metrics': {m!r} names unknown backbone {named!r}; valid "
                                f"backbones: {', '.join(catalog.names('backbone'))}")
        if len(set(metrics)) != len(metrics):
            raise SpecError(f"{source}: key '{where}.metrics' lists a metric twice: {metrics}")
        if not isinstance(raw["primary_metric"], str) or raw["primary_metric"] not in metrics:
            raise SpecError(f"{source}: key '{where}.primary_metric' must be one of the track's metrics {metrics}")
        for key in ("trainer", "eval"):
            if not isinstance(raw.get(key) or {}, dict):
                raise SpecError(f"{source}: key '{where}.{key}' must be a mapping")
        evals = _build(EvalSpec, {**base_eval, **(raw.get("eval") or {})}, f"{where}.eval", source)
        check_bounds(evals, f"{where}.eval", source)
        if not catalog.is_registered("backbone", evals.backbone):
            raise SpecError(
                f"{source}: key '{where}.eval.backbone': unknown backbone {evals.backbone!r}; valid backbones: "
                f"{', '.join(catalog.names('backbone'))}"
            )
        if evals.real_split not in ("train", "val", "test"):
            raise SpecError(f"{source}: key '{where}.eval.real_split' must be train, val or test")
        check_eval_backbones(evals, [m.partition("@")[0] for m in metrics], f"{where}.eval", source)
        track_name = check_safe_name(raw["name"], f"{where}.name", source)
        if any(t.name == track_name for t in tracks):
            raise SpecError(f"{source}: key '{where}.name': track name {track_name!r} is used twice; names must differ")
        tracks.append(
            TrackSpec(
                name=track_name,
                primary_metric=raw["primary_metric"],
                metrics=tuple(metrics),
                datamodules=_named_args(raw["datamodules"], f"{where}.datamodules", source, "datamodule"),
                models=_named_args(raw["models"], f"{where}.models", source, "model", allow_label=True),
                trainer=_trainer_spec({**base_trainer, **(raw.get("trainer") or {})}, f"{where}.trainer", source),
                eval=evals,
            )
        )
    return SuiteSpec(
        name=name,
        description=description,
        seeds=seeds,
        tracks=tuple(tracks),
        source=source,
    )


def load_suite_file(path: str | Path) -> SuiteSpec:
    """Reads (:func:`bench.suite_yaml.load_yaml`: ``yaml.SafeLoader`` with limits) and validates a suite file.

    Raises:
        SpecError: If the file cannot be read, is not valid YAML, or fails validation.
    """
    return parse_suite(load_yaml(path), str(path))
