"""The ``bench`` command line.

    bench list {suites,models,datamodules,metrics,backbones,fusions} [--names]
    bench run --suite NAME [--models a,b] [--datamodule NAME] [--seeds 0,1,2] [--max-epochs N]
              [--limit-batches F] [--fast] [--accelerator auto|cpu|gpu|cuda|mps] [--devices N] [--out DIR] [--json]
              [--publish DIR] [--cache-dir DIR] [--backbone-weights FILE] [--rerun [MODELS]]
              [--checkpoint-every N] [--precision P] [--strategy S] [--num-nodes N]
              [--accumulate-grad-batches N] [--no-deterministic] [--launcher local|ray] [--ray-address HOST:PORT]
              [--threads-per-unit N] [--max-retries N] [--dry-run] [--logger csv,tensorboard,mlflow,wandb]
    bench eval --real PATH --fake PATH [--metrics fid,kid,is,prc] [--backbone NAME] [--backbone-weights FILE]
               [--resize MODE] [--n N] [--seed S] [--batch-size B] [--json]
               (PATH: folder of PNG/JPEG, .npz, datamodule:split)
    bench report --suite NAME --results A.csv [B.csv ...] --out DIR [--publish DIR]
               (one leaderboard from several runs of a suite's models; later files replace earlier runs)
    bench site DIR [--out SITE]
               (one static HTML site over every leaderboard published in DIR; SITE defaults to DIR/site)

``--fast`` is a smoke run (see :data:`FAST_RUN`): 1 epoch of 2 training and 2 validation batches per run
(``--max-epochs`` / ``--limit-batches`` still win), smaller generative evaluation (at most 64 generated images,
10 KID subsets of at most 32, 2 IS splits, a 2-sample likelihood bound on 32 images); the seeds and the
classification/robustness evaluation (the whole test split) are unchanged. The numbers are not comparable with a
full run; the Markdown says so and its command line shows ``--fast``.

A suite with robustness results also gets ``accuracy_vs_noise.png`` next to the leaderboard, linked from it
(``--publish`` copies it as ``<suite>-accuracy-vs-noise.png``).

Re-running the same ``bench run`` command skips the units already complete in ``--out`` and resumes an
interrupted one from its last checkpoint (see :mod:`bench.units`, :mod:`bench.resume`); ``--rerun`` runs
complete units again.

Exit codes: 0 success; 1 the suite ran but some run failed (see results.csv); 2 bad input (unknown name,
invalid suite file, missing data or weights) — reported in one line on stderr before any work starts; 130 / 143
stopped by SIGINT (Ctrl-C) / SIGTERM: complete units kept, leaderboard of them written, one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import InputError

if TYPE_CHECKING:
    from bench.runner import SuiteOutcome
    from bench.spec import SuiteSpec

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2
LISTS = ("suites", "models", "datamodules", "metrics", "backbones", "fusions")

#: What ``--fast`` sets: trainer settings (unless given on the command line) and caps on the evaluation's sizes.
FAST_RUN = {
    "max_epochs": 1,
    "limit_batches": 2,
    "eval_caps": {"n_fake": 64, "kid_subsets": 10, "kid_subset_size": 32, "is_splits": 2, "nll_samples": 2,
                  "nll_images": 32},
}


class UsageError(InputError):
    """Bad input from the user: reported in one line, exit code 2."""


def _registry(kind: str):
    """The registry ``bench list KIND`` shows (KIND is plural: ``models``, ``suites``, ...)."""
    from bench import catalog

    return catalog.registry(kind.removesuffix("s"))


def _csv_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UsageError(f"--{what} needs a comma-separated list, got {text!r}")
    return items


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return int(value) if value > 1 and value == int(value) else value


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


#: Accelerators Lightning accepts by name.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: --precision values (aliases ``32``, ``16``, ``bf16``, ``64`` map to Lightning's names).
PRECISION_CHOICES = ("32", "32-true", "16-mixed", "bf16-mixed", "64-true")


def _precision(text: str) -> str:
    from bench.spec import PRECISION_ALIASES, PRECISIONS

    value = PRECISION_ALIASES.get(text, text)
    if value not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; valid: {', '.join(PRECISION_CHOICES)}")
    return value


def _logger_names(text: str | None) -> str | None:
    """``--logger`` → its canonical form (:func:`bench.loggers.check_logger_names`), or None when not given."""
    from bench.loggers import LoggerNameError, check_logger_names

    if text is None:
        return None
    try:
        return check_logger_names(_csv_list(text, "logger"))
    except LoggerNameError as err:
        raise UsageError(f"--logger: {err}") from None


def _check_tracker_packages(spec: SuiteSpec) -> None:
    """A UsageError when a track's ``trainer.logger`` (after ``--logger``) names a tracker not installed here."""
    from bench.loggers import missing_package

    for track in spec.tracks:
        missing = missing_package(track.trainer.logger)
        if missing:
            raise UsageError(f"{spec.source}: track '{track.name}': key 'trainer.logger': {missing}")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors in one line (``bench: error: ...``) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"bench: error: {message}\n")
        sys.exit(EXIT_USAGE)


class _VersionAction(argparse.Action):
    """``--version``: computed only when asked (the git commit needs a subprocess)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 - argparse's API
        print(f"bench {_version()}")
        parser.exit()


def _version() -> str:
    """The installed distribution's version and, in a git checkout, its commit."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("genfusion-bench")
    except PackageNotFoundError:
        text = "unknown (not installed)"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, text=True,
                                capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{text} (git {commit[:12]})" if commit else text


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="bench", description="Benchmark generative models and multimodal fusion.")
    parser.add_argument("--version", action=_VersionAction, help="print the version (and git commit) and exit")
    # every sub-command's --help shows each option's default
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **k)

    p_list = sub.add_parser("list", help="print registered names, one per line")
    p_list.add_argument("kind", choices=LISTS, help="which registry to list")
    p_list.add_argument("--names", action="store_true", help="names only, one per line (for scripts)")

    p_run = sub.add_parser("run", help="run a suite and write results and leaderboards")
    p_run.add_argument("--suite", required=True, help="registered suite name (bench list suites) or a .yaml path")
    p_run.add_argument("--models", help="comma-separated subset of the suite's models")
    p_run.add_argument("--datamodule", help="run the suite on this datamodule instead of its own")
    p_run.add_argument("--seeds", help="comma-separated integer seeds (replaces the suite's)")
    p_run.add_argument("--max-epochs", type=_positive_int, help="replace every track's max_epochs")
    p_run.add_argument("--limit-batches", type=_positive_number,
                       help="fraction (<=1) or number (>1) of train/val batches per epoch")
    p_run.add_argument("--fast", action="store_true",
                       help="smoke run: 1 epoch of 2 train/val batches, smaller generative evaluation, same seeds")
    p_run.add_argument("--accelerator", default="auto", choices=ACCELERATORS, help="Lightning accelerator")
    p_run.add_argument("--devices", type=_positive_int, default=1, help="devices per unit (GPUs, or CPU processes)")
    p_run.add_argument("--precision", type=_precision, metavar="P",
                       help=f"training precision, one of {', '.join(PRECISION_CHOICES)} (replaces the suite's)")
    p_run.add_argument("--strategy", metavar="NAME", help="Lightning strategy (auto, ddp, ddp_spawn, fsdp, ...)")
    p_run.add_argument("--num-nodes", type=_positive_int, metavar="N", help="nodes per unit (torchrun / SLURM)")
    p_run.add_argument("--accumulate-grad-batches", type=_positive_int, metavar="N",
                       help="gradient accumulation of automatically optimized models")
    p_run.add_argument("--no-deterministic", dest="deterministic", action="store_false", default=None,
                       help="let Lightning pick non-deterministic (faster GPU) kernels; recorded in the config hash")
    p_run.add_argument("--checkpoint-every", type=_non_negative_int, metavar="N",
                       help="training batches between resumable checkpoints (0: at every epoch end; default: the "
                            "suite's, else 100); one more when training ends")
    p_run.add_argument("--logger", metavar="NAMES",
                       help="experiment trackers, comma-separated: csv (always on), tensorboard, mlflow, wandb "
                            "(offline); all write under --out (default: the suite's trainer.logger, else csv)")
    p_run.add_argument("--rerun", nargs="?", const="all", metavar="MODELS",
                       help="run complete units again: all of them, or those of these comma-separated models")
    p_run.add_argument("--launcher", choices=("local", "ray"), default="local",
                       help="local: units one after another in this process; ray: units as Ray tasks")
    p_run.add_argument("--ray-address", metavar="HOST:PORT",
                       help="Ray cluster for --launcher ray (default $RAY_ADDRESS, else a local Ray instance)")
    p_run.add_argument("--threads-per-unit", type=_positive_int, metavar="N",
                       help="torch threads of each unit, and the CPUs each Ray task asks for (default: torch's "
                            "own for local, 1 for ray); values are identical across launchers at equal N")
    p_run.add_argument("--max-retries", type=_non_negative_int, default=2, metavar="N",
                       help="Ray retries of a unit whose worker or node died, before it is recorded as failed")
    p_run.add_argument("--out", type=Path, help="output folder (default runs/<suite>)")
    p_run.add_argument("--cache-dir", type=Path, help="real-feature cache (default $BENCH_CACHE_DIR or ~/.cache/genfusion-bench)")
    p_run.add_argument("--backbone-weights", type=Path, metavar="FILE",
                       help="weights file for the feature backbone (e.g. Inception's .pth when offline)")
    p_run.add_argument("--publish", type=Path, metavar="DIR",
                       help="also copy the leaderboard to DIR/<suite>.csv and .md, results to DIR/<suite>-results.csv "
                            "(and the accuracy-vs-noise plot to DIR/<suite>-accuracy-vs-noise.png)")
    p_run.add_argument("--json", action="store_true", help="print one JSON object with the outcome on stdout")
    p_run.add_argument("--dry-run", action="store_true",
                       help="check everything (suite, data, models, backbones, trainer settings, --out) and list the "
                            "units that would run; train and write nothing")

    p_report = sub.add_parser("report", help="merge results.csv files of one suite into one leaderboard")
    p_report.add_argument("--suite", required=True, help="the suite the results belong to (name or .yaml path)")
    p_report.add_argument("--results", required=True, type=Path, nargs="+", metavar="CSV",
                          help="results.csv files, oldest first: a later file replaces earlier runs of its models")
    p_report.add_argument("--out", required=True, type=Path, help="output folder")
    p_report.add_argument("--publish", type=Path, metavar="DIR", help="also copy the leaderboard as bench run does")

    p_site = sub.add_parser("site", help="one static HTML site over the leaderboards published in a folder")
    p_site.add_argument("dir", type=Path, metavar="DIR", help="folder of published leaderboards (bench run --publish)")
    p_site.add_argument("--out", type=Path, metavar="SITE", help="output folder (default DIR/site)")

    p_eval = sub.add_parser("eval", help="score any two image sets (folder, .npz, or datamodule:split)")
    p_eval.add_argument("--real", required=True, help="reference images: folder of PNG/JPEG, .npz, or datamodule:split")
    p_eval.add_argument("--fake", required=True, help="generated images: folder of PNG/JPEG, .npz, or datamodule:split")
    p_eval.add_argument("--train", metavar="SOURCE", help="training images (memorization metrics authpct, "
                        "memorization): folder, .npz, or datamodule:split")
    p_eval.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="data folder of datamodule:split sources (e.g. where Fashion-MNIST's idx files are)")
    p_eval.add_argument("--metrics", default="fid,kid",
                        help="comma-separated metrics, each optionally <metric>@<backbone>; valid: "
                             "fid, fd, kid, kd, is, prc, cmmd, vendi, authpct, memorization")
    p_eval.add_argument("--backbone", default="efficientnet-lite0", help="registered backbone (bench list backbones)")
    p_eval.add_argument("--backbone-weights", type=Path, metavar="FILE", help="weights file for the backbone")
    p_eval.add_argument("--backbone-size", type=_positive_int, metavar="PX",
                        help="input side the backbone resizes to (a suite's eval.backbone_size); default: its own")
    p_eval.add_argument("--resize", metavar="MODE", help="resize mode: tf1-bilinear (torch-fidelity/TF1, the "
                        "Inception paper standard), bilinear (torch) or clean (clean-fid's PIL bicubic); default: "
                        "the backbone's own")
    p_eval.add_argument("--device", default="cpu", help="torch device of the backbones (cpu, cuda, cuda:1, ...)")
    p_eval.add_argument("--n", type=_positive_int, help="score a seeded random subset of at most N images per set")
    p_eval.add_argument("--seed", type=int, default=2020,
                        help="seed of subsets, KID subsets and IS splits (torch-fidelity's default)")
    p_eval.add_argument("--batch-size", type=_positive_int, default=64, help="images per backbone forward")
    p_eval.add_argument("--kid-subsets", type=_positive_int, default=100, help="KID subsets (torch-fidelity's default)")
    p_eval.add_argument("--kid-subset-size", type=_positive_int, default=1000,
                        help="KID subset size, clamped to the smaller set (the protocol records the clamped value)")
    p_eval.add_argument("--is-splits", type=_positive_int, default=10, help="Inception Score splits of --fake")
    p_eval.add_argument("--cache-dir", type=Path, help="real-feature cache shared with bench run")
    p_eval.add_argument("--compare", action="store_true",
                        help="also score with torch-fidelity, torchmetrics and clean-fid on the same Inception "
                             "weights (--backbone inception-v3-compat) and print them side by side")
    p_eval.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def describe(kind: str, name: str, obj: object) -> str:
    """One line about a registered ``name``: the first line of its docstring (of its description for suites)
    and, for datamodules, where their data comes from (:attr:`~datamodules.base.BenchDataModule.data_source`)."""
    if kind == "suites":
        from bench.suites import load_suite

        try:
            text = load_suite(name).description
        except InputError as err:
            return f"(cannot be read: {err})"
    else:
        text = getattr(obj, "__doc__", None) or ""
    line = first_sentence(text)
    source = getattr(obj, "data_source", None) if kind == "datamodules" else None
    return f"{line} [{source}]" if source else line


def first_sentence(text: str, limit: int = 110) -> str:
    """The first sentence of ``text``'s first paragraph (joined over its lines), at most ``limit`` characters."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split()).replace("``", "`")
    match = re.search(r"(?<=\.)\s(?=[A-Z(`])", paragraph)  # a period ending a sentence, not "e.g. x"
    sentence = paragraph[: match.start()] if match else paragraph
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def cmd_list(kind: str, names_only: bool = False) -> int:
    registry = _registry(kind)
    refused = registry.load_plugins()  # imports every plugin of this kind: the broken ones are reported here
    usable = [name for name in registry.names() if name not in refused]
    width = max(map(len, usable), default=0)
    for name in usable:
        print(name if names_only else f"{name:<{width}}  {describe(kind, name, registry.get(name))}".rstrip())
    if refused:
        sys.stderr.write(f"bench: error: {'; '.join(refused.values())}\n")
        return EXIT_USAGE
    return EXIT_OK


def publish_markdown(md_path: Path, publish_dir: Path, suite_name: str) -> None:
    """Copies the leaderboard Markdown to ``publish_dir/<suite>.md`` with the sample grids it links (first seeds)
    copied to ``publish_dir/<suite>-samples/``, the accuracy-vs-noise figure to
    ``publish_dir/<suite>-accuracy-vs-noise.png``, and the links rewritten to them."""
    from bench.atomic import atomic_copy, atomic_write_text
    from bench.plots import ACCURACY_VS_NOISE_PNG

    text = md_path.read_text()
    prefix = f"{suite_name}-samples/"
    for rel in sorted(set(re.findall(r"\]\((samples/[^)]+\.png)\)", text))):
        target = publish_dir / prefix / rel.removeprefix("samples/")
        atomic_copy(md_path.parent / rel, target)
        text = text.replace(f"]({rel})", f"]({prefix}{rel.removeprefix('samples/')})")
    if f"]({ACCURACY_VS_NOISE_PNG})" in text:
        published = f"{suite_name}-{Path(ACCURACY_VS_NOISE_PNG).stem.replace('_', '-')}.png"
        atomic_copy(md_path.parent / ACCURACY_VS_NOISE_PNG, publish_dir / published)
        text = text.replace(f"]({ACCURACY_VS_NOISE_PNG})", f"]({published})")
    atomic_write_text(publish_dir / f"{suite_name}.md", text)


def fast_spec(spec: SuiteSpec, max_epochs_given: bool, limit_given: bool) -> SuiteSpec:
    """``spec`` as a ``--fast`` smoke run (see :data:`FAST_RUN`); the description says it is one.

    Args:
        spec: The suite after the other command-line overrides.
        max_epochs_given: ``--max-epochs`` was given (it wins over the smoke run's 1 epoch).
        limit_given: ``--limit-batches`` was given (it wins over the smoke run's 2 batches).
    """
    caps = FAST_RUN["eval_caps"]
    tracks = []
    for track in spec.tracks:
        trainer = track.trainer
        if not max_epochs_given:
            trainer = dataclasses.replace(trainer, max_epochs=FAST_RUN["max_epochs"])
        if not limit_given:
            trainer = dataclasses.replace(trainer, limit_train_batches=FAST_RUN["limit_batches"],
                                          limit_val_batches=FAST_RUN["limit_batches"])
        ev = track.eval
        # nll_images = 0 means "every image", so the cap replaces it
        capped = {k: cap if (k == "nll_images" and ev.nll_images == 0) else min(getattr(ev, k), cap)
                  for k, cap in caps.items()}
        tracks.append(dataclasses.replace(track, trainer=trainer, eval=dataclasses.replace(ev, **capped)))
    note = (f"**Smoke run (`--fast`)**: {trainer_note(max_epochs_given, limit_given)}; generative evaluation capped "
            f"({', '.join(f'{k} ≤ {v}' for k, v in caps.items())}); seeds not changed by `--fast`. "
            "Not comparable with a full run.")
    return dataclasses.replace(spec, tracks=tuple(tracks), description=f"{spec.description.strip()}\n\n{note}")


def trainer_note(max_epochs_given: bool, limit_given: bool) -> str:
    """What ``--fast`` did to training, in words."""
    epochs = "epochs as given" if max_epochs_given else f"{FAST_RUN['max_epochs']} epoch"
    batches = "batches as given" if limit_given else f"{FAST_RUN['limit_batches']} train and validation batches"
    return f"{epochs}, {batches}"


def _rerun(text: str | None, spec) -> bool | frozenset[str]:
    """``--rerun`` → True (all units), a set of model labels, or False."""
    if text is None:
        return False
    if text == "all":
        return True
    from bench import catalog

    labels = _csv_list(text, "rerun")
    in_suite = sorted({m for t in spec.tracks for m in t.models})
    unknown = [m for m in labels if m not in in_suite and m != catalog.REFERENCE_LABEL]
    if unknown:
        raise UsageError(f"--rerun: model {unknown[0]!r} is not in this run of suite {spec.name!r}; its models: "
                         f"{', '.join(in_suite)}")
    return frozenset(labels)


def check_out_dir(path: Path, option: str) -> Path:
    """``path`` if it is (or can become) a writable folder, else a UsageError naming ``option``.

    Checked before any work, so a file given as ``--out``, or a read-only folder, costs no training run.
    """
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a folder; name a folder (it is created if missing)")
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {existing} is not writable by this user; name a writable folder")
    if existing is not None and not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, so the folder cannot be created; name a folder")
    return path


def _datamodule_params(name: str | None) -> frozenset[str] | None:
    """The constructor arguments of datamodule ``name`` (imports the datamodules), or None for no name."""
    if name is None:
        return None
    import inspect

    from datamodules import DATAMODULES

    return frozenset(inspect.signature(DATAMODULES.get(name).__init__).parameters) - {"self"}


def _carried_args_notes(spec: SuiteSpec, tracks: set[str], datamodule: str, accepted: frozenset[str] | None
                        ) -> list[str]:
    """One line per track of ``tracks`` saying which datamodule arguments ``--datamodule`` kept and dropped
    (``spec``: the suite before the override); printed once the preflight has passed."""
    from bench.spec import carried_datamodule_args

    notes = []
    for track in spec.tracks:
        if track.name not in tracks or datamodule in track.datamodules:
            continue
        kept, dropped = carried_datamodule_args(track, datamodule, accepted)
        if kept or dropped:
            show = lambda d: ", ".join(f"{k}={v!r}" for k, v in d.items()) or "none"  # noqa: E731
            notes.append(f"--datamodule {datamodule}: track {track.name!r} keeps its datamodule arguments "
                         f"{show(kept)}; dropped (not accepted by {datamodule}): {show(dropped)}")
    return notes


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bench import catalog
    from bench.interrupts import SuiteInterrupted
    from bench.suites import load_suite

    try:
        # the suite file and the options first: they need no heavy import, so a bad one fails in a fraction of a
        # second (torch and Lightning take 5-10 s to import)
        spec = load_suite(args.suite)
        if args.datamodule is not None and not catalog.is_registered("datamodule", args.datamodule):
            raise UsageError(f"--datamodule: unknown datamodule {args.datamodule!r}; valid datamodules: "
                             f"{', '.join(catalog.names('datamodule'))}")
        seeds = None
        if args.seeds is not None:
            try:
                seeds = [int(s) for s in _csv_list(args.seeds, "seeds")]
            except ValueError:
                raise UsageError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        original, datamodule_params = spec, _datamodule_params(args.datamodule)
        spec = spec.with_overrides(
            models=_csv_list(args.models, "models") if args.models is not None else None,
            datamodule=args.datamodule,
            datamodule_params=datamodule_params,
            seeds=seeds,
            max_epochs=args.max_epochs,
            limit_batches=args.limit_batches,
            trainer={"precision": args.precision, "strategy": args.strategy, "num_nodes": args.num_nodes,
                     "accumulate_grad_batches": args.accumulate_grad_batches, "deterministic": args.deterministic,
                     "checkpoint_every_n_batches": args.checkpoint_every, "logger": _logger_names(args.logger)},
        )
        _check_tracker_packages(spec)
        if args.datamodule is not None:
            kept_tracks = {t.name for t in spec.tracks}
            notes = _carried_args_notes(original, kept_tracks, args.datamodule, datamodule_params)
        else:
            notes = []
        rerun = _rerun(args.rerun, spec)
        if args.ray_address is not None and args.launcher != "ray":
            raise UsageError("--ray-address is for --launcher ray")
        if args.fast:
            spec = fast_spec(spec, args.max_epochs is not None, args.limit_batches is not None)
        out_dir = check_out_dir(args.out or Path("runs") / spec.name, "--out")
        if args.cache_dir is not None:
            check_out_dir(args.cache_dir, "--cache-dir")
        if args.backbone_weights is not None and not args.backbone_weights.is_file():
            raise UsageError(f"--backbone-weights {args.backbone_weights}: no such file")
        if args.accelerator in ("gpu", "cuda") and not _gpu_available():
            raise UsageError("--accelerator gpu: no CUDA device is visible (torch.cuda.is_available() is False); use cpu or auto")

        from bench.runner import RunOptions, run_suite

        opts = RunOptions(
            out_dir=out_dir, accelerator=args.accelerator, devices=args.devices, cache_dir=args.cache_dir,
            backbone_weights=args.backbone_weights, rerun=rerun, launcher=args.launcher,
            ray_address=args.ray_address, threads_per_unit=args.threads_per_unit, max_retries=args.max_retries,
            console=Console(stderr=True), command=" ".join(["bench"] + [shlex.quote(a) for a in args.argv]),
            dry_run=args.dry_run, notes=tuple(notes),
        )
        outcome = run_suite(spec, opts)
    except InputError as err:
        sys.stderr.write(f"bench: error: {err}\n")
        return EXIT_USAGE
    except SuiteInterrupted as err:
        sys.stderr.write(f"bench: {err}\n")
        return err.exit_code
    if outcome is None:  # --dry-run, or a non-zero rank of a torchrun / SLURM run (rank 0 reports)
        return EXIT_OK

    from bench.plots import ACCURACY_VS_NOISE_PNG

    linked = f"]({ACCURACY_VS_NOISE_PNG})" in outcome.leaderboard_md.read_text()  # this run drew it
    figure = outcome.out_dir / ACCURACY_VS_NOISE_PNG if linked else None
    if args.publish is not None:
        publish(args.publish, spec.name, outcome.leaderboard_csv, outcome.leaderboard_md, outcome.results_csv)
    failed = outcome.status_counts.get("failed", 0)
    if args.json:
        print(json.dumps({
            "suite": spec.name, "out_dir": str(outcome.out_dir), "results_csv": str(outcome.results_csv),
            "leaderboard_csv": str(outcome.leaderboard_csv), "leaderboard_md": str(outcome.leaderboard_md),
            "accuracy_vs_noise_png": str(figure) if figure else None,
            "status_counts": outcome.status_counts, "leaderboard": outcome.leaderboard,
        }, indent=2, default=str))
    else:
        print_summary(spec, outcome.leaderboard)
        print(f"wrote {outcome.results_csv}, {outcome.leaderboard_csv}, {outcome.leaderboard_md}"
              + (f", {figure}" if figure else ""))
    return EXIT_RUN_FAILED if failed else EXIT_OK


def print_summary(spec: SuiteSpec, leaderboard: list[dict]) -> None:
    """The leaderboard on stdout as one rich table per track: model, datamodule, seeds, the primary metric's
    mean ± std, status (the full tables, protocol and provenance are in the files)."""
    import math

    from rich.console import Console
    from rich.table import Table

    console = Console()
    for track in spec.tracks:
        rows = [r for r in leaderboard if r["track"] == track.name]
        if not rows:
            continue
        table = Table(title=f"{spec.name} / {track.name} (ranked by {track.primary_metric})", title_justify="left")
        for column in ("model", "datamodule", "seeds", track.primary_metric, "status"):
            table.add_column(column, justify="right" if column in ("seeds", track.primary_metric) else "left")
        for r in rows:
            mean, std = r.get(f"{track.primary_metric}_mean"), r.get(f"{track.primary_metric}_std")
            missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
            value = "–" if missing(mean) else f"{mean:.4g}" + ("" if missing(std) else f" ± {std:.2g}")
            table.add_row(str(r["model"]), str(r["datamodule"]), str(r["n_seeds"]), value, str(r["status"]))
        console.print(table)


def publish(publish_dir: Path, suite_name: str, leaderboard_csv: Path, leaderboard_md: Path, results_csv: Path) -> None:
    """Copies a leaderboard (CSV, Markdown with its figures and sample grids) and its results into ``publish_dir``."""
    from bench.atomic import atomic_copy

    atomic_copy(leaderboard_csv, publish_dir / f"{suite_name}.csv")
    publish_markdown(leaderboard_md, publish_dir, suite_name)
    atomic_copy(results_csv, publish_dir / f"{suite_name}-results.csv")


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import report
    from bench.suites import load_suite

    try:
        spec = load_suite(args.suite)
        missing = [str(p) for p in args.results if not p.is_file()]
        if missing:
            raise UsageError(f"--results: no such file(s): {', '.join(missing)}")
        command = " ".join(["bench"] + [shlex.quote(a) for a in args.argv])
        results_csv, lb_csv, lb_md = report(spec, list(args.results), args.out, command)
    except InputError as err:
        sys.stderr.write(f"bench: error: {err}\n")
        return EXIT_USAGE
    if args.publish is not None:
        publish(args.publish, spec.name, lb_csv, lb_md, results_csv)
    print(f"wrote {results_csv}, {lb_csv}, {lb_md}")
    return EXIT_OK


def cmd_site(args: argparse.Namespace) -> int:
    """``bench site DIR --out SITE`` (:mod:`bench.site`): bad input is one line, exit 2."""
    from bench.site import build_site

    try:
        out = check_out_dir(args.out or args.dir / "site", "--out")
        pages = build_site(args.dir, out)
    except InputError as err:
        sys.stderr.write(f"bench: error: {err}\n")
        return EXIT_USAGE
    print(f"wrote {pages[-1]} and {len(pages) - 1} suite page(s) under {out}")
    return EXIT_OK


def _eval_metrics(text: str) -> list[str]:
    """``--metrics`` of bench eval: registered image-set metrics, each optionally ``<metric>@<backbone>``."""
    from bench import catalog

    metrics = _csv_list(text, "metrics")
    for m in metrics:
        base, at, named = m.partition("@")
        if base not in catalog.EVAL_METRICS:
            raise UsageError(f"--metrics: unknown metric {m!r} for bench eval; valid metrics: "
                             f"{', '.join(catalog.EVAL_METRICS)} (optionally as <metric>@<backbone>)")
        if at and not catalog.is_registered("backbone", named):
            raise UsageError(f"--metrics: {m!r} names unknown backbone {named!r}; valid backbones: "
                             f"{', '.join(catalog.names('backbone'))}")
    if len(set(metrics)) != len(metrics):
        raise UsageError(f"--metrics lists a metric twice: {','.join(metrics)}")
    return metrics


def _eval_device(name: str) -> Any:
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"--device: {name!r} is not a torch device (cpu, cuda, cuda:1, mps)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def cmd_eval(args: argparse.Namespace) -> int:
    from bench import catalog

    try:
        # names first, then the images (torch only): bad input fails before the metrics and backbones import
        metrics = _eval_metrics(args.metrics)
        if not catalog.is_registered("backbone", args.backbone):
            raise UsageError(f"--backbone: unknown backbone {args.backbone!r}; valid backbones: "
                             f"{', '.join(catalog.names('backbone'))}")
        if args.cache_dir is not None:
            check_out_dir(args.cache_dir, "--cache-dir")
        if args.data_dir is not None and not args.data_dir.is_dir():
            raise UsageError(f"--data-dir: no such folder: {args.data_dir}")
        if args.backbone_weights is not None and not args.backbone_weights.is_file():
            raise UsageError(f"--backbone-weights: no such file: {args.backbone_weights}")
        if args.compare and args.n is not None:
            raise UsageError("--compare scores the whole sets with every backend: drop --n")
        if args.compare and args.backbone != "inception-v3-compat":
            raise UsageError("--compare scores with the other libraries' Inception network: use --backbone "
                             "inception-v3-compat (with --backbone-weights FILE offline)")
        from bench.image_inputs import load_image_set

        real = load_image_set(args.real, data_dir=args.data_dir)
        fake = load_image_set(args.fake, data_dir=args.data_dir)
        train = None if args.train is None else load_image_set(args.train, data_dir=args.data_dir)
        device = _eval_device(args.device)
        from rich.console import Console

        from bench.backbones.build import build_backbone
        from bench.eval_images import evaluate_image_sets

        try:
            backbone = build_backbone(args.backbone, size=args.backbone_size, resize=args.resize,
                                      weights_path=args.backbone_weights).to(device)
            named = {n: build_backbone(n).to(device) for n in dict.fromkeys(
                m.partition("@")[2] for m in metrics if "@" in m)}
        except ValueError as err:  # e.g. an unknown --resize mode, or a size the backbone refuses
            raise UsageError(str(err).splitlines()[0]) from err
        options = dict(n=args.n, seed=args.seed, batch_size=args.batch_size, kid_subsets=args.kid_subsets,
                       kid_subset_size=args.kid_subset_size, is_splits=args.is_splits)
        result = evaluate_image_sets(real, fake, metrics, backbone, cache_dir=args.cache_dir,
                                     console=Console(stderr=True), backbones=named, train=train, **options)
        comparison = _compare(args, real, fake, metrics, options, result) if args.compare else None
    except InputError as err:
        sys.stderr.write(f"bench: error: {err}\n")
        return EXIT_USAGE
    if args.json:
        if comparison is not None:
            from bench.compare import compare_rows_json

            result["compare"] = compare_rows_json(comparison)
        print(json.dumps(result, indent=2))
        return EXIT_OK
    for row in result["rows"]:
        std = "" if row["value_std"] is None else f" ± {row['value_std']:.3g}"
        print(f"{row['metric']}: {row['value']:.6g}{std}")
    proto = result["protocol"]
    print(f"backbone {proto['backbone']} (sha256 {proto['backbone_sha256'][:16]}…), resize {proto['resize']}, "
          f"n_real {proto['n_real']}, n_fake {proto['n_fake']}, seed {proto['seed']}")
    if comparison is not None:
        from rich.console import Console

        from bench.compare import render_compare_table

        # a pipe or a log gets the whole table (rich would squeeze it to 80 columns)
        Console(width=None if sys.stdout.isatty() else 220).print(render_compare_table(comparison))
    return EXIT_OK


def _compare(args: argparse.Namespace, real: Any, fake: Any, metrics: list[str], options: dict[str, Any],
             ours: dict[str, Any]) -> list[Any]:
    """``--compare``: the other backends on the same images and weights (:mod:`bench.compare`)."""
    from bench.backbones.inception_v3_compat import resolve_weights_path
    from bench.compare import compare_backends

    weights = resolve_weights_path(None if args.backbone_weights is None else str(args.backbone_weights))
    values = {k: v for k, v in ours.items() if k != "rows"}
    compared = [m for m in metrics if m in ("fid", "kid", "is")]
    options = {k: v for k, v in options.items() if k not in ("n", "batch_size")}
    return compare_backends(real, fake, compared, weights, lambda *_: values, batch_size=args.batch_size, **options)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bench`` console script."""
    from bench.console_warnings import one_line_warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    commands = {"list": lambda a: cmd_list(a.kind, a.names), "eval": cmd_eval, "report": cmd_report, "site": cmd_site}
    try:
        with one_line_warnings():  # each warning once, in one line, without library paths
            return commands.get(args.command, cmd_run)(args)
    except BrokenPipeError:  # `bench list models | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
