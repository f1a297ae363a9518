"""Experiment trackers (``bench run --logger`` / ``trainer.logger``, :mod:`bench.loggers`), through the real CLI.

* one tiny real run with ``--logger csv,tensorboard,mlflow`` (``,wandb`` when W&B is installed; each tracker's
  test is skipped when its package is not) → a TensorBoard event file that TensorBoard's own reader reads back
  with the train loss, an MLflow file store that ``MlflowClient`` reads back (run, params, metric), CSV rows,
  ``yaml.safe_load``-able ``hparams.yaml`` files, a W&B offline run, and nothing written outside ``--out`` (with
  ``HOME`` and the temporary folder inside the test's folder, so ``~`` or ``/tmp`` writes would show);
* ``--dry-run`` with every tracker writes nothing (the preflight builds its Trainer in a folder it removes);
* unknown names and missing packages → one line, exit 2, before training; the suite key (string or list) and
  the config hash (unchanged by the choice);
* MLflow's run per unit: a fresh start marks the earlier run deleted, a resume continues it;
* no MLflow telemetry outside pytest / CI (a subprocess without their variables).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import bench.runner  # noqa: F401  (imports matplotlib & co. before HOME moves, as a real process would have)
from bench import loggers
from bench.cli import main
from bench.spec import TrainerSpec

TRACK, UNIT = "gen", "dcgan-digits"


def tiny_suite(**trainer: Any) -> dict[str, Any]:
    """One dcgan unit on 8×8 digits, 2 training batches: a few seconds."""
    return {
        "name": "loggers-tiny",
        "description": "tiny suite of the logger tests",
        "seeds": [0],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, **trainer},
        "eval": {"backbone": "efficientnet-lite0", "backbone_size": 32, "n_fake": 16, "batch_size": 16,
                 "kid_subsets": 2, "kid_subset_size": 8},
        "tracks": [{"name": TRACK, "primary_metric": "kid", "metrics": ["kid"],
                    "datamodules": {"digits": {"image_size": 8, "batch_size": 32}},
                    "models": {"dcgan": {"latent_dim": 8, "width": 8}}}],
    }


def isolate_env(monkeypatch, names) -> None:
    """Removes these variables for the test and restores them after it, whatever the code under test sets
    (``monkeypatch.delenv`` of an absent variable would not restore its absence)."""
    for var in names:
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)


def listing(root: Path, skip: Path | None = None) -> set[str]:
    """Every path below ``root`` (relative), leaving out ``skip`` and what is below it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip is None or not p.is_relative_to(skip)}


def prepare_sandbox(root: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """A suite file, ``HOME`` and the temporary folder inside ``root``, the feature cache at ``cache``."""
    (root / "suite.yaml").write_text(yaml.safe_dump(tiny_suite(), sort_keys=False))
    for name in ("home", "tmp"):
        (root / name).mkdir()
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("TMPDIR", str(root / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    isolate_env(monkeypatch, ("MLFLOW_TRACKING_URI", "WANDB_DIR", "WANDB_MODE", *loggers.WANDB_FOLDER_VARIABLES,
                              "MLFLOW_DISABLE_TELEMETRY", "MLFLOW_ALLOW_FILE_STORE"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch, tmp_path_factory):
    prepare_sandbox(tmp_path, monkeypatch, tmp_path_factory.mktemp("bench-cache"))
    return tmp_path


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def needs(name: str):
    """Skips a test of logger ``name`` when its package is not installed."""
    return pytest.mark.skipif(not installed(name), reason=f"{name} is not installed (pip install "
                                                          f"{loggers.LOGGERS[name][1]})")


#: The trackers of the shared run: every one installed (TensorBoard and MLflow are in the dev extras).
TRACKERS = ["csv"] + [name for name in ("tensorboard", "mlflow", "wandb") if installed(name)]


@dataclass
class TrackedRun:
    """The outcome of :func:`tracked_run`."""

    out: Path
    unit_dir: Path
    dry_run_rc: int
    dry_run_wrote: set[str]
    rc: int
    outside_out: list[str]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> TrackedRun:
    """One tiny real ``bench run --logger <every installed tracker>`` (after a ``--dry-run`` of it), shared by the
    tests below; what it wrote outside ``--out`` is listed while HOME and the temporary folder are the sandbox's."""
    root = tmp_path_factory.mktemp("tracked-run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        prepare_sandbox(root, monkeypatch, tmp_path_factory.mktemp("bench-cache"))
        out, suite, names = root / "out", str(root / "suite.yaml"), ",".join(TRACKERS)
        before = listing(root)
        dry_run_rc = main(["run", "--suite", suite, "--out", str(out), "--logger", names, "--dry-run"])
        dry_run_wrote = listing(root) - before
        rc = main(["run", "--suite", suite, "--out", str(out), "--logger", names])
        # W&B's own temporary folders (its service socket, media and artifact staging) are in the system
        # temporary folder while the process runs; nothing else may be outside --out
        outside = sorted(p for p in listing(root, skip=out) - before
                         if not (p.startswith("tmp/") and "wandb" in p.split("/")[1]))
    return TrackedRun(out, out / "logs" / TRACK / UNIT / "seed0", dry_run_rc, dry_run_wrote, rc, outside)


def train_loss(metrics: pd.DataFrame) -> str:
    return next(c for c in metrics.columns if c.startswith("train_") and "loss" in c)


def test_run_writes_only_under_out(tracked_run):
    assert tracked_run.dry_run_rc == 0 and tracked_run.rc == 0
    assert tracked_run.dry_run_wrote == set()  # the preflight built its trackers in a folder it removed
    assert tracked_run.outside_out == []  # nothing in HOME, the temporary folder or beside --out


def test_csv_rows_and_safe_loadable_hparams(tracked_run):
    unit_dir = tracked_run.unit_dir
    metrics = pd.read_csv(unit_dir / "metrics.csv")
    assert metrics[train_loss(metrics)].notna().sum() == 2  # limit_train_batches 2, log_every_n_steps 1
    files = [unit_dir / "hparams.yaml"]
    if "tensorboard" in TRACKERS:
        files.append(unit_dir / loggers.TENSORBOARD_SUBDIR / "hparams.yaml")
    for hparams_file in files:
        assert "!!python" not in hparams_file.read_text()
        hparams = yaml.safe_load(hparams_file.read_text())
        assert hparams["latent_dim"] == 8 and hparams["width"] == 8
        assert isinstance(hparams["image_shape"], list) and hparams["image_shape"][-2:] == [8, 8]


@needs("tensorboard")
def test_tensorboard_event_file_reads_back(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = pd.read_csv(tracked_run.unit_dir / "metrics.csv")
    loss = train_loss(metrics)
    folder = tracked_run.unit_dir / loggers.TENSORBOARD_SUBDIR
    assert list(folder.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(folder))
    events.Reload()
    assert loss in events.Tags()["scalars"]
    assert [s.value for s in events.Scalars(loss)] == pytest.approx(list(metrics[loss].dropna()), rel=1e-6)


@needs("mlflow")
def test_mlflow_file_store_reads_back(tracked_run):
    from mlflow.tracking import MlflowClient

    metrics = pd.read_csv(tracked_run.unit_dir / "metrics.csv")
    loss = train_loss(metrics)
    assert (tracked_run.out / loggers.MLRUNS_DIR).is_dir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=loggers.mlflow_tracking_uri(tracked_run.out))
        experiment = client.get_experiment_by_name(TRACK)
        assert experiment is not None
        unit = f"{TRACK}/{UNIT}/seed0"
        runs = client.search_runs([experiment.experiment_id], f"tags.`{loggers.MLFLOW_UNIT_TAG}` = '{unit}'")
        assert len(runs) == 1
        run = runs[0]
        assert run.info.run_name == f"{UNIT}-seed0" and run.info.status == "FINISHED"
        assert run.data.params["latent_dim"] == "8" and run.data.params["width"] == "8"
        history = client.get_metric_history(run.info.run_id, loss)
        assert [m.value for m in history] == pytest.approx(list(metrics[loss].dropna()), rel=1e-6)


@needs("wandb")
def test_wandb_run_is_offline_under_out(tracked_run):
    wandb_dir = tracked_run.unit_dir / "wandb"
    runs = list(wandb_dir.glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))  # an offline run (an online one is run-*)
    assert not list(wandb_dir.glob("run-*"))


@pytest.mark.parametrize("value, message", [
    ("csv,comet", "--logger: unknown logger 'comet'; valid loggers: csv, mlflow, tensorboard, wandb"),
    (",", "--logger needs a comma-separated list"),
])
def test_bad_logger_is_one_line_before_training(sandbox, capsys, value, message):
    out = sandbox / "out"
    assert main(["run", "--suite", str(sandbox / "suite.yaml"), "--out", str(out), "--logger", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_missing_package_names_the_pip_install(sandbox, capsys, monkeypatch):
    real = loggers._installed
    monkeypatch.setattr(loggers, "_installed", lambda modules: "wandb" not in modules and real(modules))
    out = sandbox / "out"
    assert main(["run", "--suite", str(sandbox / "suite.yaml"), "--out", str(out), "--logger", "wandb"]) == 2
    err = capsys.readouterr().err
    assert err == ("bench: error: --logger: logger 'wandb' needs the wandb package, which is not installed: "
                   "pip install wandb\n")
    # the same from the suite file, naming the track and the key ...
    suite = sandbox / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(logger="tensorboard,wandb"), sort_keys=False))
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"bench: error: {suite}: track 'gen': key 'trainer.logger': logger 'wandb' needs the wandb "
                   f"package, which is not installed: pip install wandb\n")
    assert not out.exists()
    # ... and --logger replaces the suite's choice
    assert main(["run", "--suite", str(suite), "--out", str(out), "--logger", "csv", "--dry-run"]) == 0


def test_suite_key_string_or_list_and_unknown_name(tmp_path):
    from bench.errors import SpecError
    from bench.suites import load_suite

    for value in ("tensorboard, mlflow", ["tensorboard", "mlflow"], ["csv", "tensorboard", "mlflow", "csv"]):
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump(tiny_suite(logger=value), sort_keys=False))
        assert load_suite(str(path)).tracks[0].trainer.logger == "csv,tensorboard,mlflow"
    path.write_text(yaml.safe_dump(tiny_suite(logger="neptune"), sort_keys=False))
    with pytest.raises(SpecError, match=r"key 'tracks\[0\]\.trainer\.logger': unknown logger 'neptune'; valid "
                                        r"loggers: csv, mlflow, tensorboard, wandb"):
        load_suite(str(path))


def test_logger_choice_is_not_in_the_config_hash():
    base = TrainerSpec(max_epochs=3)
    assert base.logger == "csv"
    assert TrainerSpec(max_epochs=3, logger="tensorboard,mlflow,wandb").hashed() == base.hashed() == {
        "max_epochs": 3, "limit_train_batches": 1.0, "limit_val_batches": 1.0, "gradient_clip_val": None}
    assert "logger" not in repr(TrainerSpec(logger="tensorboard"))  # the leaderboard's protocol line


def test_hparams_are_safe_yaml(tmp_path):
    import enum
    from argparse import Namespace

    import numpy as np
    import torch

    from bench.logger_classes import BenchCSVLogger, yaml_safe

    class Mode(str, enum.Enum):
        FAST = "fast"

    params = {"image_shape": (1, 8, 8), "nested": {"pair": (1, (2, 3)), "set": {3, 1}}, "path": Path("/x"),
              "np": np.float32(0.5), "np64": np.float64(0.25), "tensor": torch.tensor([1, 2]), "inf": float("inf"),
              "ns": Namespace(a=(1,)), "mode": Mode.FAST, 3: None}
    plain = yaml_safe(params)
    assert plain == {"image_shape": [1, 8, 8], "nested": {"pair": [1, [2, 3]], "set": [1, 3]}, "path": "/x",
                     "np": 0.5, "np64": 0.25, "tensor": [1, 2], "inf": float("inf"), "ns": {"a": [1]},
                     "mode": "FAST", "3": None}
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain
    logger = BenchCSVLogger(tmp_path, name="x", version="seed0")
    logger.log_hyperparams(params)
    logger.save()
    text = (tmp_path / "x" / "seed0" / "hparams.yaml").read_text()
    assert "!!python" not in text and yaml.safe_load(text) == plain


@needs("mlflow")
def test_mlflow_run_per_unit_fresh_start_and_resume(tmp_path, monkeypatch):
    """A fresh start (no unit log folder: the runner removed it) marks the earlier run deleted; a resume (the
    folder is there) continues the same run."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    isolate_env(monkeypatch, ("MLFLOW_DISABLE_TELEMETRY", "MLFLOW_ALLOW_FILE_STORE"))
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"

    def one_attempt(value: float) -> str:
        logger = loggers.build_loggers("mlflow", out, f"{TRACK}/{UNIT}", 0)[1]
        logger.log_metrics({"loss": value}, step=1)
        logger.finalize("success")
        (out / "logs" / TRACK / UNIT / "seed0").mkdir(parents=True, exist_ok=True)  # what the CSV logger leaves
        return logger.run_id

    first = one_attempt(1.0)
    assert one_attempt(2.0) == first  # resumed: the same run
    client = MlflowClient(tracking_uri=loggers.mlflow_tracking_uri(out))
    assert [m.value for m in client.get_metric_history(first, "loss")] == [1.0, 2.0]
    (out / "logs" / TRACK / UNIT / "seed0").rmdir()  # a fresh start
    second = one_attempt(3.0)
    assert second != first
    experiment = client.get_experiment_by_name(TRACK).experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [second]  # the first one is deleted
    assert client.get_run(first).info.lifecycle_stage == "deleted"


@needs("mlflow")
def test_no_mlflow_telemetry_outside_pytest(tmp_path):
    """Outside pytest and CI (whose variables MLflow reads to stay quiet), MLflow set up as build_loggers does
    writes nothing to HOME (MLflow's telemetry would write ~/.config/mlflow/telemetry.json and contact its
    server)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    # what build_loggers does before Lightning's MLFlowLogger imports mlflow (without Lightning: a faster process)
    code = ("import sys; from bench.loggers import mlflow_environment, mlflow_tracking_uri; mlflow_environment(); "
            "from pathlib import Path; from mlflow.tracking import MlflowClient; "
            "client = MlflowClient(mlflow_tracking_uri(Path(sys.argv[1]))); "
            "run = client.create_run(client.create_experiment('gen')); client.log_metric(run.info.run_id, 'loss', 1.0)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], env=env, check=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[2])
    assert not (home / ".config" / "mlflow").exists()
    assert (tmp_path / "out" / loggers.MLRUNS_DIR).is_dir()
