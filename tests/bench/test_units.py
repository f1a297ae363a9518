"""bench.units and the runner's resume promise, through the real CLI.

* unit keys: stable, changed by what changes numbers (arguments, seed, trainer settings), not by the checkpoint
  interval;
* rerunning skips complete units, ``--rerun`` forces them, a changed configuration reruns its units, a subset
  run keeps the other units' rows, a failed unit runs again;
* ``kill -9`` of ``bench run`` at seeded random moments, several rounds, then the same command → results.csv
  equal to an uninterrupted run (key columns and bit-identical values) and no temporary files;
* SIGINT / SIGTERM → one line, exit 130 / 143, complete units kept and their leaderboard written;
* bad values of the new flags and keys → exit 2 with one line.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from bench.atomic import remove_stale_temporaries, temp_path
from bench.cli import main
from bench.units import Unit, inside, PathOutsideOutError

KEY_COLUMNS = ["track", "model", "datamodule", "seed", "metric"]


def tiny_suite(**trainer: Any) -> dict[str, Any]:
    """Two tracks, three models, two seeds on 8×8 digits; a few seconds per unit."""
    return {
        "name": "resume-tiny",
        "description": "tiny suite of the resume tests",
        "seeds": [0, 1],
        "trainer": {"max_epochs": 2, "limit_train_batches": 6, "limit_val_batches": 1,
                    "checkpoint_every_n_batches": 2, **trainer},
        "eval": {"reference": False, "backbone": "efficientnet-lite0", "backbone_size": 32, "n_fake": 40, "batch_size": 40,
                 "kid_subsets": 5, "kid_subset_size": 20},
        "tracks": [
            {"name": "gen", "primary_metric": "kid", "metrics": ["kid", "mse"],
             "datamodules": {"digits": {"batch_size": 32}},
             "models": {"dcgan": {"latent_dim": 8, "width": 8}, "vae": {"latent_dim": 4, "width": 8}}},
            {"name": "cls", "primary_metric": "accuracy", "metrics": ["accuracy"],
             "datamodules": {"captioned-digits": {"batch_size": 64}},
             "models": {"early-concat": {"n_layers": 1}}},
        ],
    }


def write_suite(tmp_path: Path, data: dict[str, Any], name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(suite: Path, out: Path, *extra: str) -> int:
    return main(["run", "--suite", str(suite), "--out", str(out), "--json", *extra])


def results(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv")
    return frame.sort_values(KEY_COLUMNS).reset_index(drop=True)


def assert_same_values(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a[KEY_COLUMNS].equals(b[KEY_COLUMNS])
    assert a["value"].tolist() == b["value"].tolist() or a["value"].equals(b["value"])


def temporaries(out: Path) -> list[Path]:
    return sorted(out.rglob("*.tmp"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(path))
    return path


# ------------------------------------------------------------------------------------------------ unit keys
def test_unit_key_is_stable_and_tracks_what_changes_numbers():
    a = Unit("gen", "dcgan", "digits", 0, "abc")
    assert a.key == Unit("gen", "dcgan", "digits", 0, "abc").key
    assert a.key != Unit("gen", "dcgan", "digits", 1, "abc").key
    assert a.key != Unit("gen", "dcgan", "digits", 0, "abd").key
    assert a.name == "gen/dcgan-digits-seed0"


def test_trainer_hash_ignores_checkpoint_interval_and_defaults():
    from bench.spec import TrainerSpec

    base = TrainerSpec(max_epochs=3)
    assert base.hashed() == {"max_epochs": 3, "limit_train_batches": 1.0, "limit_val_batches": 1.0,
                             "gradient_clip_val": None}  # the keys of the published runs' hashes, unchanged
    assert TrainerSpec(max_epochs=3, checkpoint_every_n_batches=7).hashed() == base.hashed()
    assert TrainerSpec(max_epochs=3, precision="bf16-mixed").hashed()["precision"] == "bf16-mixed"
    assert TrainerSpec(max_epochs=3, deterministic=False).hashed()["deterministic"] is False


def test_inside_refuses_paths_that_leave_out(tmp_path):
    assert inside(tmp_path, "units", "gen", "x.json") == tmp_path / "units" / "gen" / "x.json"
    with pytest.raises(PathOutsideOutError):
        inside(tmp_path, "logs", "../../../escaped")


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = temp_path(tmp_path / "x").name.split(".")[2]
    stale = tmp_path / "a" / f".results.csv.{host}.{int(dead.stdout)}.0123abcd.tmp"
    live = tmp_path / f".results.csv.{host}.{os.getpid()}.0123abcd.tmp"
    elsewhere = tmp_path / f".results.csv.otherhost.{int(dead.stdout)}.0123abcd.tmp"  # another node's writer
    other = tmp_path / "notes.tmp"
    stale.parent.mkdir()
    for p in (stale, live, elsewhere, other):
        p.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and elsewhere.exists() and other.exists()


# ----------------------------------------------------------------------------------- skip, rerun, subsets
@pytest.mark.slow
def test_rerun_skips_complete_units_and_rerun_forces(tmp_path, cache, capsys):
    suite = write_suite(tmp_path, tiny_suite())
    out = tmp_path / "out"
    assert run(suite, out) == 0
    first = results(out)
    records = sorted((out / "units").glob("*/*.json"))
    assert len(records) == 6 and not list((out / "checkpoints").rglob("*.ckpt"))
    stamps = {p: p.stat().st_mtime_ns for p in records}
    capsys.readouterr()

    assert run(suite, out) == 0
    err = capsys.readouterr().err
    assert err.count("complete, skipped") == 6
    assert {p: p.stat().st_mtime_ns for p in records} == stamps
    assert_same_values(first, results(out))

    assert run(suite, out, "--rerun", "vae") == 0
    err = capsys.readouterr().err
    assert err.count("complete, skipped") == 4
    changed = [p for p in records if p.stat().st_mtime_ns != stamps[p]]
    assert sorted(p.name for p in changed) == ["vae-digits-seed0.json", "vae-digits-seed1.json"]
    assert_same_values(first, results(out))  # deterministic: the rerun reproduces its values

    # a subset run into the same folder keeps every other unit's rows
    assert run(suite, out, "--models", "dcgan", "--seeds", "0") == 0
    assert_same_values(first, results(out))
    capsys.readouterr()

    # a unit whose weights file changed since its record (truncated, overwritten) is not complete: it runs again
    weights = out / "weights" / "gen" / "vae-digits-seed0.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert run(suite, out) == 0
    assert capsys.readouterr().err.count("complete, skipped") == 5
    assert_same_values(first, results(out))

    # an edited configuration is not reused: the changed track's units run again
    edited = tiny_suite()
    edited["tracks"][1]["models"]["early-concat"] = {"n_layers": 2}
    assert run(write_suite(tmp_path, edited, "edited.yaml"), out) == 0
    err = capsys.readouterr().err
    assert err.count("complete, skipped") == 4
    again = results(out)
    cls = again[again["track"] == "cls"]
    assert len(cls) == 2 and not cls["config_hash"].isin(first["config_hash"]).any()


@pytest.mark.slow
def test_failed_unit_runs_again(tmp_path, cache, capsys, monkeypatch):
    suite = write_suite(tmp_path, tiny_suite())
    out = tmp_path / "out"
    import bench.runner as runner

    real = runner.Evaluator.evaluate

    def broken(self, model, dm, seed):  # noqa: ANN001
        if type(model).__name__ == "VAE" and seed == 1:
            raise RuntimeError("scoring broke")
        return real(self, model, dm, seed)

    monkeypatch.setattr(runner.Evaluator, "evaluate", broken)
    assert run(suite, out, "--models", "vae") == 1
    assert (results(out)["status"] == "failed").sum() == 1 * 2  # one unit, its two metrics
    monkeypatch.setattr(runner.Evaluator, "evaluate", real)
    capsys.readouterr()
    assert run(suite, out, "--models", "vae") == 0
    assert capsys.readouterr().err.count("complete, skipped") == 1
    assert (results(out)["status"] == "ok").all()


# ------------------------------------------------------------------------------------- kill -9 and signals
def _bench(suite: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--out", str(out), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "BENCH_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_kill_9_at_random_moments_then_rerun_equals_an_uninterrupted_run(tmp_path, cache):
    """Seeded random kill times over the whole run (start-up, training, scoring, writing), three rounds."""
    suite = write_suite(tmp_path, tiny_suite())
    env = _env(cache)
    ref = tmp_path / "ref"
    start = time.monotonic()
    proc = _bench(suite, ref, env)
    _, err = proc.communicate(timeout=600)
    duration = time.monotonic() - start
    assert proc.returncode == 0, err
    reference = results(ref)

    rng = random.Random(1234)
    kills = 0
    for round_ in range(3):
        out = tmp_path / f"killed{round_}"
        for _ in range(4):
            proc = _bench(suite, out, env)
            time.sleep(rng.uniform(1.0, duration))
            if proc.poll() is None:
                proc.kill()
                kills += 1
            proc.communicate(timeout=60)
        proc = _bench(suite, out, env)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert_same_values(reference, results(out))
        assert temporaries(out) == []
    assert kills >= 3  # every round was interrupted at least once (its first run starts from nothing)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_keeping_complete_units(tmp_path, cache, sig, code):
    suite = write_suite(tmp_path, tiny_suite())
    out = tmp_path / "out"
    proc = _bench(suite, out, _env(cache))
    deadline = time.monotonic() + 300
    while not list((out / "units").glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.startswith("bench:")]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0]
    assert "Traceback" not in err
    done = sorted((out / "units").glob("*/*.json"))
    assert 1 <= len(done) < 6
    assert (out / "leaderboard.md").is_file()
    assert len(results(out).drop_duplicates(["track", "model", "seed"])) == len(done)
    # the same command finishes the rest
    proc = _bench(suite, out, _env(cache))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert len(sorted((out / "units").glob("*/*.json"))) == 6


@pytest.mark.slow
def test_concurrent_processes_on_one_out_lose_no_rows(tmp_path, cache):
    """Two processes on one --out at once — different models, then the same suite twice — end with the union of
    their units, no unit trained twice, no row lost or duplicated."""
    suite = write_suite(tmp_path, tiny_suite())
    env = _env(cache)
    ref = tmp_path / "ref"
    assert run(suite, ref, "--threads-per-unit", "1") == 0  # the subprocesses below run on one thread too
    reference = results(ref)

    def both(out: Path, argvs: list[list[str]]) -> list[str]:
        procs = [subprocess.Popen([sys.executable, "-m", "bench", "run", "--suite", str(suite), "--out", str(out),
                                   "--json", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for argv in argvs]
        errs = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        return errs

    split = tmp_path / "split"
    both(split, [["--models", "dcgan,early-concat"], ["--models", "vae"]])
    assert_same_values(reference, results(split))

    same = tmp_path / "same"
    errs = both(same, [[], []])
    assert_same_values(reference, results(same))
    trained = sum(len(re.findall(r"^\[\d+/6\] .*, seed \d+$", e, flags=re.M)) for e in errs)
    assert trained == 6, errs  # each of the 6 units trained by exactly one of the two processes


# ------------------------------------------------------------------------------------------------ bad values
@pytest.mark.parametrize("argv, fragment", [
    (["--precision", "fp8"], "--precision"),
    (["--checkpoint-every", "-1"], "--checkpoint-every"),
    (["--strategy", "warp-drive"], "strategy"),
    (["--rerun", "nosuchmodel"], "--rerun"),
    (["--num-nodes", "0"], "--num-nodes"),
    (["--accelerator", "tpu-v9"], "--accelerator"),
    (["--precision", "16-mixed", "--accelerator", "cpu"], "16-mixed"),
    (["--launcher", "slurm"], "--launcher"),
    (["--threads-per-unit", "0"], "--threads-per-unit"),
    (["--max-retries", "-1"], "--max-retries"),
    (["--accumulate-grad-batches", "0"], "--accumulate-grad-batches"),
])
def test_bad_trainer_flags_exit_2_in_one_line(tmp_path, cache, capsys, argv, fragment):
    suite = write_suite(tmp_path, tiny_suite())
    with pytest.raises(SystemExit) as exc:
        code = run(suite, tmp_path / "out", *argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("trainer, fragment", [
    ({"precision": "fp8"}, "trainer.precision"),
    ({"accumulate_grad_batches": 0}, "trainer.accumulate_grad_batches"),
    ({"checkpoint_every_n_batches": -2}, "trainer.checkpoint_every_n_batches"),
    ({"strategy": "nope"}, "trainer.strategy"),
    ({"deterministic": "yes"}, "trainer.deterministic"),
])
def test_bad_trainer_keys_exit_2_in_one_line(tmp_path, cache, capsys, trainer, fragment):
    suite = write_suite(tmp_path, tiny_suite(**trainer))
    assert run(suite, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and str(suite) in err[0], err


def test_accumulation_with_manual_optimization_is_refused(tmp_path, cache, capsys):
    suite = write_suite(tmp_path, tiny_suite(accumulate_grad_batches=2))
    assert run(suite, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manual optimization" in err[0] and "dcgan" in err[0]


@pytest.mark.slow
def test_bf16_mixed_on_cpu_trains_manual_and_automatic_models(tmp_path, cache):
    """--precision bf16-mixed (CPU autocast): the manual-optimization GAN and the VAE train and score; the
    precision enters the config hash, so the units are not those of the 32-bit run."""
    suite = write_suite(tmp_path, tiny_suite())
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    assert run(suite, fp32, "--models", "dcgan,vae", "--seeds", "0") == 0
    assert run(suite, bf16, "--models", "dcgan,vae", "--seeds", "0", "--precision", "bf16-mixed") == 0
    a, b = results(fp32), results(bf16)
    assert (b["status"] == "ok").all() and len(a) == len(b)
    assert not set(a["config_hash"]) & set(b["config_hash"])
    assert "precision='bf16-mixed'" in (bf16 / "leaderboard.md").read_text()
