"""The Lightning loggers :func:`bench.loggers.build_loggers` builds: Lightning's own, with

* hyperparameters made plain data first (:func:`yaml_safe`), so every ``hparams.yaml`` loads with
  ``yaml.safe_load`` (Lightning writes tuples such as ``image_shape`` as ``!!python/tuple``);
* MLflow: the experiment created safely when several ``bench run`` processes share one ``--out``, one run per
  unit (a fresh start marks the unit's earlier runs deleted, a resume continues its run);
* W&B: offline, its folder created before ``wandb.init`` (which would otherwise fall back to the system temporary
  folder), and the run finished when training ends (Lightning leaves it open, and the next WandbLogger of the same
  process would log into it), so every unit has its own run.

Module-level classes (not built in a function) so that a Trainer holding them can be pickled (``ddp_spawn``).
"""

from __future__ import annotations

import enum
import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from bench.loggers import MLFLOW_UNIT_TAG, wandb_environment


def yaml_safe(value: Any) -> Any:
    """``value`` as data ``yaml.safe_dump`` writes and ``yaml.safe_load`` reads back: mappings (string keys) and
    lists (from tuples, lists and sets — sets sorted by their text) recursively; numbers, strings, booleans and None
    as the plain built-in types (subclasses such as NumPy's float64 made plain); NumPy / torch scalars and arrays
    become numbers and lists, enums their name, paths and anything else their ``str``."""
    if isinstance(value, enum.Enum):  # before the built-ins: a str or int enum is one
        return value.name
    if value is None or type(value) in (bool, int, float, str):
        return value
    for plain in (bool, int, float, str):  # subclasses, e.g. numpy.float64: safe_dump refuses them
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {str(k): yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [yaml_safe(v) for v in sorted(value, key=str)]
    if isinstance(value, (list, tuple)):
        return [yaml_safe(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy / torch scalars and arrays
    if callable(tolist) and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        return yaml_safe(tolist())
    return str(value)


def _plain_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    return yaml_safe(params) if params is not None else {}


class BenchCSVLogger(CSVLogger):
    """Lightning's CSVLogger with a ``yaml.safe_load``-able ``hparams.yaml``."""

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None = None) -> None:
        super().log_hyperparams(_plain_params(params))


class BenchTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with a ``yaml.safe_load``-able ``hparams.yaml``."""

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, metrics: dict[str, Any] | None = None,
                        step: int | None = None) -> None:
        super().log_hyperparams(_plain_params(params), metrics=metrics, step=step)


class BenchMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger on a local file store, one run per unit.

    Args:
        experiment_name: The MLflow experiment (the track).
        tracking_uri: ``file://`` URI of the store (:func:`bench.loggers.mlflow_tracking_uri`).
        run_name: The run's name (``<model>-<dm>-seed<k>``).
        unit: The unit's log path ``<track>/<model>-<dm>/seed<k>``, stored as tag :data:`MLFLOW_UNIT_TAG`.
        resume: Continue the unit's last active run (the unit resumes from its checkpoint) instead of marking its
            earlier runs deleted and starting a new one.
    """

    def __init__(self, experiment_name: str, tracking_uri: str, run_name: str, unit: str, resume: bool) -> None:
        super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, run_name=run_name,
                         tags={MLFLOW_UNIT_TAG: unit})
        self._bench_unit = unit
        self._bench_resume = resume

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MLflow client, with this unit's experiment and run resolved (created on first use)."""
        if not self._initialized and self._run_id is None:
            self._experiment_id = self._experiment_id or self._bench_experiment_id()
            self._run_id = self._bench_unit_run()
        return MLFlowLogger.experiment.fget(self)  # type: ignore[attr-defined]

    def _bench_experiment_id(self) -> str:
        """The experiment's id, created when missing; another process creating it at the same time is fine."""
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client
        found = client.get_experiment_by_name(self._experiment_name)
        if found is not None and found.lifecycle_stage != "deleted":
            return found.experiment_id
        try:
            return client.create_experiment(self._experiment_name)
        except MlflowException:  # created by another process meanwhile
            found = client.get_experiment_by_name(self._experiment_name)
            if found is None:
                raise
            return found.experiment_id

    def _bench_unit_run(self) -> str | None:
        """The run to continue (resume), else None after marking the unit's earlier runs deleted."""
        client = self._mlflow_client
        runs = client.search_runs([self._experiment_id],
                                  filter_string=f"tags.`{MLFLOW_UNIT_TAG}` = '{self._bench_unit}'",
                                  order_by=["attributes.start_time DESC"])
        if self._bench_resume and runs:
            client.update_run(runs[0].info.run_id, status="RUNNING")
            return runs[0].info.run_id
        for run in runs:
            client.delete_run(run.info.run_id)
        return None

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace) -> None:
        super().log_hyperparams(_plain_params(params))


class BenchWandbLogger(WandbLogger):
    """Lightning's WandbLogger, offline only.

    Args:
        save_dir: The unit's log folder; W&B writes ``save_dir/wandb/offline-run-*``.
        name: The run's name (``<model>-<dm>-seed<k>``).
        group: The run's group (the track).
        out_dir: The run's ``--out`` (W&B's own folders go below it: :func:`bench.loggers.wandb_environment`).
    """

    def __init__(self, save_dir: Any, name: str, group: str, out_dir: Any) -> None:
        self._bench_dir = save_dir
        self._bench_out = out_dir
        # a dict, not wandb.Settings: importing wandb creates temporary folders, and building the logger (the
        # preflight does) must not
        settings = {"mode": "offline", "console": "off", "silent": True, "x_disable_stats": True,
                    "disable_code": True, "save_code": False}
        super().__init__(name=name, save_dir=os.fspath(save_dir), offline=True, group=group,
                         project=os.environ.get("WANDB_PROJECT", "genfusion-bench"), settings=settings)
        self._wandb_init.pop("anonymous", None)  # deprecated by wandb (a warning when passed, even None)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The W&B run (created on first use, in this unit's folder)."""
        if self._experiment is None:
            wandb_environment(self._bench_out)
            os.makedirs(self._bench_dir, exist_ok=True)  # a missing dir sends wandb to the system temp folder
        return WandbLogger.experiment.fget(self)  # type: ignore[attr-defined]

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace) -> None:
        super().log_hyperparams(_plain_params(params))

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._experiment is not None:  # kept: a later log raises instead of silently starting a new run
            self._experiment.finish(exit_code=0 if status == "success" else 1)

