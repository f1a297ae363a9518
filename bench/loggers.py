"""Experiment trackers of ``bench run``: ``--logger csv,tensorboard,mlflow,wandb`` / suite key ``trainer.logger``.

Lightning's CSV logger is always on (``logs/<track>/<model>-<datamodule>/seed<k>/metrics.csv`` and
``hparams.yaml``: the HTML report reads its training curves); the others are added to it. Everything any of them
writes lies under ``--out``, and none contacts the network:

* ``csv``: ``logs/<track>/<model>-<dm>/seed<k>/{metrics.csv,hparams.yaml}``.
* ``tensorboard``: ``logs/<track>/<model>-<dm>/seed<k>/tensorboard/`` (event file and ``hparams.yaml``); view
  with ``tensorboard --logdir <out>/logs``.
* ``mlflow``: an MLflow file store ``<out>/mlruns`` (tracking URI ``file://<out>/mlruns``): one experiment per
  track, one run per unit named ``<model>-<dm>-seed<k>`` and tagged ``bench.unit``; ``mlflow-skinny`` (client and
  file store) is enough, viewing with ``mlflow ui --backend-store-uri file://<out>/mlruns`` needs the full
  ``mlflow``. MLflow's telemetry is switched off and its file store allowed (MLflow 3 refuses it unless
  ``MLFLOW_ALLOW_FILE_STORE`` is set).
* ``wandb``: Weights & Biases in offline mode only, ``logs/<track>/<model>-<dm>/seed<k>/wandb/offline-run-*``
  (``wandb sync`` uploads them later, if wanted); its config, cache and data folders under
  ``<out>/logs/.wandb/``. Optional: ``pip install wandb``.

A unit that starts afresh has its log folder removed by the runner (so TensorBoard and W&B files of an earlier
attempt go with it), and its earlier MLflow run is marked deleted; a unit resumed from its checkpoint appends to
its folder and continues its MLflow run.

Every logger saves hyperparameters in a form ``yaml.safe_load`` reads (tuples such as ``image_shape`` become
lists: Lightning would write ``!!python/tuple``). The logger choice is not part of the config hash: it changes no
number.

This module imports nothing heavy, so suite files are checked without Lightning; the Lightning classes are in
:mod:`bench.logger_classes`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

#: The logger that is always on.
CSV = "csv"
#: Accepted logger names → (modules of which one must be importable, the pip requirement to name when none is).
LOGGERS: dict[str, tuple[tuple[str, ...], str]] = {
    "csv": ((), ""),
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "mlflow": (("mlflow",), "mlflow-skinny"),
    "wandb": (("wandb",), "wandb"),
}
#: Folder of a unit's TensorBoard event files, inside its CSV log folder.
TENSORBOARD_SUBDIR = "tensorboard"
#: Folder (under ``--out``) of the MLflow file store.
MLRUNS_DIR = "mlruns"
#: Folder (under ``--out/logs``) of W&B's own config, cache and data folders.
WANDB_HOME = ".wandb"
#: The MLflow tag naming a run's unit (``<track>/<model>-<dm>/seed<k>``).
MLFLOW_UNIT_TAG = "bench.unit"


class LoggerNameError(ValueError):
    """An unknown logger name, or a logger whose package is not installed; the message is one line."""


def split_names(value: str | Sequence[str]) -> list[str]:
    """The logger names of a comma-separated string or a sequence, stripped, empty items dropped."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item.strip()]


def normalize_logger_names(value: str | Sequence[str]) -> str:
    """The canonical form of a logger choice: ``csv`` first, then the others in the order given, each once,
    comma-separated (no check: see :func:`check_logger_names`)."""
    names = [CSV]
    for name in split_names(value):
        if name not in names:
            names.append(name)
    return ",".join(names)


def _installed(modules: tuple[str, ...]) -> bool:
    return not modules or any(importlib.util.find_spec(m) is not None for m in modules)


def missing_package(value: str | Sequence[str]) -> str | None:
    """The one-line reason a chosen (known) logger cannot run here — its package is not installed, naming the
    ``pip install`` that adds it — or None."""
    for name in split_names(value):
        modules, requirement = LOGGERS.get(name, ((), ""))
        if not _installed(modules):
            return f"logger {name!r} needs the {requirement} package, which is not installed: pip install {requirement}"
    return None


def check_logger_names(value: str | Sequence[str], packages: bool = True) -> str:
    """Checks a logger choice and returns its canonical form (:func:`normalize_logger_names`).

    Args:
        value: The choice (comma-separated or a sequence).
        packages: Also check that each chosen logger's package is installed. A suite file is checked without
            (so that ``--logger csv`` can still run a suite naming a tracker that is not installed here); the
            command line and :func:`build_loggers` check with.

    Raises:
        LoggerNameError: an unknown name (listing the accepted ones), or (``packages``) a logger whose package is
            not installed (naming the ``pip install`` that adds it).
    """
    names = split_names(value)
    for name in names:
        if name not in LOGGERS:
            raise LoggerNameError(f"unknown logger {name!r}; valid loggers: {', '.join(sorted(LOGGERS))} "
                                  f"(comma-separated; csv is always on)")
    missing = missing_package(names) if packages else None
    if missing:
        raise LoggerNameError(missing)
    return normalize_logger_names(names)


def mlflow_tracking_uri(out_dir: Path) -> str:
    """The tracking URI of the MLflow file store of ``out_dir``: ``file:///<absolute out>/mlruns``."""
    return (Path(out_dir).resolve() / MLRUNS_DIR).as_uri()


def mlflow_environment() -> None:
    """Sets what MLflow reads so that it stays offline and can use its file store: telemetry off (read when
    mlflow is imported; it would contact its server and write ``~/.config/mlflow``) and the file store allowed
    (MLflow 3 refuses it otherwise). Values the user set are kept."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


#: W&B's folder variables → the sub-folder of ``<out>/logs/.wandb`` they get.
WANDB_FOLDER_VARIABLES = {"WANDB_CONFIG_DIR": "config", "WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data",
                          "WANDB_ARTIFACT_DIR": "artifacts"}
_wandb_values_set: dict[str, str] = {}


def wandb_environment(out_dir: Path) -> None:
    """Sets what W&B reads so that it stays offline and writes only under ``out_dir``: ``WANDB_MODE=offline``
    (always), and its config, cache, data and artifact folders under ``out_dir/logs/.wandb`` unless the user set
    them (a value this function set for an earlier ``--out`` of the same process is replaced)."""
    os.environ["WANDB_MODE"] = "offline"
    home = Path(out_dir).resolve() / "logs" / WANDB_HOME
    for var, sub in WANDB_FOLDER_VARIABLES.items():
        if var not in os.environ or os.environ[var] == _wandb_values_set.get(var):
            os.environ[var] = _wandb_values_set[var] = str(home / sub)


def build_loggers(names: str | Sequence[str], out_dir: Path, log_name: str, seed: int) -> list[Logger]:
    """The Lightning loggers of one run unit, the CSV logger first (``trainer.log_dir`` is its folder).

    Args:
        names: The logger choice (``"csv,tensorboard"`` or a sequence; ``csv`` is added when missing).
        out_dir: The run's ``--out``; every logger writes below it.
        log_name: ``<track>/<model>-<datamodule>``: the unit's log folder is ``out_dir/logs/<log_name>/seed<seed>``.
        seed: The unit's seed.

    Returns:
        The loggers, in canonical order. Building them (the runner's preflight does, in a temporary folder it
        removes) writes nothing but MLflow's empty store; the first logged value creates the rest.

    Raises:
        LoggerNameError: see :func:`check_logger_names`.
    """
    from bench import logger_classes as lc

    chosen = check_logger_names(names).split(",")
    out_dir = Path(out_dir)
    version = f"seed{seed}"
    unit_dir = out_dir / "logs" / log_name / version
    track, _, run = log_name.partition("/")
    run_name = f"{run or track}-{version}"
    resume = unit_dir.is_dir()  # the runner removes the folder of a unit that starts afresh
    if "mlflow" in chosen:
        mlflow_environment()
    loggers: list[Logger] = []
    for name in chosen:
        if name == CSV:
            loggers.append(lc.BenchCSVLogger(out_dir / "logs", name=log_name, version=version))
        elif name == "tensorboard":
            loggers.append(lc.BenchTensorBoardLogger(out_dir / "logs", name=log_name, version=version,
                                                     sub_dir=TENSORBOARD_SUBDIR, default_hp_metric=False))
        elif name == "mlflow":
            loggers.append(lc.BenchMLFlowLogger(
                experiment_name=track, tracking_uri=mlflow_tracking_uri(out_dir), run_name=run_name,
                unit=f"{log_name}/{version}", resume=resume))
        elif name == "wandb":
            loggers.append(lc.BenchWandbLogger(save_dir=unit_dir, name=run_name, group=track, out_dir=out_dir))
    return loggers
