"""A full disk: one line naming the file, exit 2, and every file complete before it stays complete and loadable;
freeing space and rerunning the same command finishes the suite."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench import atomic
from bench.atomic import WriteError, atomic_write_text
from bench.cli import main


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old complete content\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(WriteError, match=r"cannot write .*results\.csv: No space left on device"):
        atomic_write_text(target, "new content that does not fit\n")
    assert target.read_text() == "old complete content\n"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left


def test_write_error_is_found_inside_wrapped_exceptions() -> None:
    inner = OSError(errno.ENOSPC, "No space left on device", "/x/metrics.csv")
    try:
        try:
            raise inner
        except OSError as err:
            raise RuntimeError("a library wrapped it") from err
    except RuntimeError as outer:
        assert atomic.disk_error(outer) is inner
    assert atomic.disk_error(ValueError("unrelated")) is None


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 32 MB tmpfs mounted for the test (needs root and mount permission; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (the disk-full case is also covered in-process)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Writes a filler file until only about ``leave`` bytes remain free."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        free = shutil.disk_usage(disk).free - leave
        chunk = b"\0" * (1 << 20)
        while free > 0:
            f.write(chunk[: min(len(chunk), free)])
            free -= len(chunk)
    return filler


def _suite(tmp_path: Path) -> Path:
    data = {
        "name": "disk-full", "seeds": [0],
        "trainer": {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 1},
        "eval": {"reference": False, "backbone_size": 32, "n_fake": 16, "batch_size": 16, "kid_subsets": 2, "kid_subset_size": 8},
        "tracks": [{"name": "gen", "primary_metric": "kid", "metrics": ["kid", "mse"],
                    "datamodules": {"digits": {"image_size": 8, "batch_size": 32}},
                    "models": {"dcgan": {"latent_dim": 8, "width": 8}, "vae": {"latent_dim": 4, "width": 8}}}],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_full_disk_mid_suite(small_disk: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.gan.dcgan import DCGAN

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    suite, out = _suite(tmp_path), small_disk / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--models", "dcgan"]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "logs" not in p.parts}

    filler = _fill(small_disk, leave=16 * 1024)
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("bench: error:")]  # the others: progress lines
    assert len(errors) == 1 and errors[0].startswith("bench: error: cannot write ") and "Traceback" not in err, err
    assert "No space left on device" in errors[0] and str(out) in errors[0]
    assert not list(out.rglob("*.tmp"))
    for path, content in before.items():  # what was complete stays complete
        if path.name not in ("suite.yaml", "environment.json"):
            assert path.read_bytes() == content, path
    assert DCGAN.load_weights(out / "weights" / "gen" / "dcgan-digits-seed0.pt").num_parameters() > 0
    assert set(pd.read_csv(out / "results.csv")["model"]) == {"dcgan"}

    filler.unlink()
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "results.csv")["model"]) == {"dcgan", "vae"}
    assert not list(out.rglob("*.tmp"))
