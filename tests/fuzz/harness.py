"""The fuzz harness's sandbox and its invariant.

Every fuzz case runs the real ``bench`` CLI in a subprocess whose working folder, ``$HOME`` and feature cache lie
inside a sandbox. The invariant (:func:`check`): exit 0 with valid outputs, or exit 2 with exactly one
``bench: error:`` line; never a traceback or another exit code; no file created anywhere in the sandbox outside
``--out`` and the cache; and the files of an earlier result placed in ``--out`` beforehand byte-identical after.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: Examples per fuzz test by default (CI) and with ``--fuzz-long`` / ``BENCH_FUZZ_LONG=1``.
LONG = bool(os.environ.get("BENCH_FUZZ_LONG"))


def examples(default: int, long: int) -> int:
    return long if LONG else default


@dataclass
class Sandbox:
    """A folder tree for fuzz cases: ``work/`` (the cwd), ``home/``, ``cache/`` (shared, allowed to grow),
    ``inputs/`` (what the test wrote), and each case's ``--out`` under ``work/``."""

    root: Path
    tally: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        for name in ("work", "home", "cache", "inputs"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    def files(self) -> set[Path]:
        """Every file and link in the sandbox, except the cache's."""
        return {p for p in self.root.rglob("*") if (p.is_file() or p.is_symlink()) and self.cache not in p.parents}

    def run(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.root / "home"), "BENCH_CACHE_DIR": str(self.cache),
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200",
               "MPLCONFIGDIR": str(self.cache / "matplotlib")}  # a library cache, like the feature cache
        return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True,
                              cwd=self.work, env=env, timeout=timeout)


def seed_earlier_result(out: Path) -> dict[Path, bytes]:
    """Places files of an earlier (complete) result in ``out``; returns them with their bytes."""
    files = {
        out / "results.csv": b"suite,track,model,seed,metric,value\nearlier,gen,dcgan,0,fid,12.5\n",
        out / "units" / "gen" / "dcgan-digits-seed0.json": json.dumps({"status": "ok"}).encode(),
        out / "weights" / "gen" / "dcgan-digits-seed0.pt": b"\x80\x02earlier weights",
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def check(sandbox: Sandbox, case: str, done: subprocess.CompletedProcess, out: Path | None,
          before: set[Path], earlier: dict[Path, bytes] | None = None, expected: str | None = None) -> str:
    """Asserts the invariant for one finished case and tallies its outcome ("ok" or "error").

    Args:
        out: The case's ``--out`` (files under it are allowed), or None for commands without one.
        before: :meth:`Sandbox.files` before the case ran. earlier: files that must be unchanged.
        expected: "ok" or "error" if the case's outcome is known in advance.
    """
    where = f"{case}: exit {done.returncode}\nstderr: {done.stderr[-3000:]}\nstdout: {done.stdout[-1000:]}"
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, where
    assert done.returncode in (0, 2), where
    outcome = "ok" if done.returncode == 0 else "error"
    if outcome == "error":
        errors = [line for line in done.stderr.splitlines() if line.startswith("bench: error:")]
        assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], where
    new = {p for p in sandbox.files() - before if out is None or out not in p.parents}
    assert not new, f"{where}\nfiles written outside --out: {sorted(map(str, new))}"
    for path, content in (earlier or {}).items():
        assert path.is_file() and path.read_bytes() == content, f"{where}\nearlier result changed: {path}"
    if expected is not None:
        assert outcome == expected, where
    sandbox.tally[outcome] += 1
    return outcome


def report(name: str, sandbox: Sandbox) -> None:
    """Appends the tally to ``$BENCH_FUZZ_REPORT`` (a JSON-lines file) when that is set."""
    path = os.environ.get("BENCH_FUZZ_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": name, **sandbox.tally}) + "\n")
