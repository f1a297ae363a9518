"""Run units: one (track, model label, datamodule, seed) of a suite, with a key and an on-disk completion record.

A unit's **key** hashes everything that changes its numbers — the run configuration that ``config_hash`` in
results.csv already covers (track, model and its arguments, datamodule and its arguments, trainer settings that
change numbers, evaluation settings, metrics) plus the seed. The code version is not part of it: rerunning after
a commit that changes numbers needs ``--rerun``.

A unit is **complete** when ``units/<track>/<label>-<datamodule>-seed<seed>.json`` exists, holds the unit's
current key, and the files it lists (final weights, sample grid) exist with the sha256 it recorded. The record —
the unit's result rows, its files and their hashes — is written atomically, and last: a unit killed at any
moment before that has no record and runs again; one killed after it is complete. results.csv and the
leaderboards are always rebuilt from the records (:func:`collect_rows`), never appended to.

Concurrency: a process runs a unit only while it holds the unit's lock file (``filelock``); a unit locked by
another process is left to it. Rebuilding results.csv holds the folder's results lock, so any number of
``bench run`` processes on one ``--out`` end with the union of their complete units.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bench.atomic import atomic_write_text
from bench.errors import InputError
from bench.hashing import config_hash, file_sha256

UNITS_DIR = "units"
RESULTS_LOCK = ".results.lock"


class PathOutsideOutError(InputError):
    """A path built from suite names would resolve outside the output folder."""


def inside(out: Path, *parts: str) -> Path:
    """``out / parts...``, refusing any result that does not resolve inside ``out``."""
    path = Path(out).joinpath(*parts)
    root = Path(out).resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise PathOutsideOutError(f"{'/'.join(parts)!r} would be written outside the output folder {out}")
    return path


@dataclass(frozen=True)
class Unit:
    """One (track, model label, datamodule, seed) of a suite.

    Attributes:
        track: Track name. label: The model's label in the track. datamodule: Datamodule name. seed: The seed.
        config_hash: Hash of the configuration (results.csv's ``config_hash``). key: ``config_hash`` + seed.
    """

    track: str
    label: str
    datamodule: str
    seed: int
    config_hash: str

    @property
    def key(self) -> str:
        return config_hash({"config_hash": self.config_hash, "seed": self.seed}, length=16)

    @property
    def stem(self) -> str:
        """``<label>-<datamodule>-seed<seed>``: the unit's file name stem inside its track's folders."""
        return f"{self.label}-{self.datamodule}-seed{self.seed}"

    @property
    def name(self) -> str:
        return f"{self.track}/{self.stem}"

    def progress(self, i: int, total: int) -> str:
        """The unit's progress line prefix, e.g. ``[3/18] generation: vae on digits, seed 0``."""
        return f"[{i}/{total}] {self.track}: {self.label} on {self.datamodule}, seed {self.seed}"

    def record_path(self, out: Path) -> Path:
        return inside(out, UNITS_DIR, self.track, f"{self.stem}.json")

    def lock_path(self, out: Path) -> Path:
        return inside(out, UNITS_DIR, self.track, f".{self.stem}.lock")

    def checkpoint_dir(self, out: Path) -> Path:
        """Training checkpoints, keyed so that a changed configuration never resumes another's checkpoint."""
        return inside(out, "checkpoints", self.track, f"{self.stem}-{self.key}")


def _clean(value: Any) -> Any:
    """JSON-safe row values (NaN stays NaN through Python's json; floats round-trip exactly)."""
    if hasattr(value, "item"):
        value = value.item()
    return value


def write_record(unit: Unit, out: Path, rows: list[dict[str, Any]], files: dict[str, str]) -> None:
    """Writes the unit's completion record atomically (last, after its files).

    Args:
        rows: The unit's result rows. files: Role → path relative to ``out`` (weights, samples) of files it wrote.
    """
    record = {
        "unit": unit.name, "track": unit.track, "label": unit.label, "datamodule": unit.datamodule,
        "seed": unit.seed, "key": unit.key, "config_hash": unit.config_hash,
        "status": rows[0]["status"] if rows else "failed",
        "files": {role: {"path": rel, "sha256": file_sha256_uncached(out / rel), "bytes": (out / rel).stat().st_size}
                  for role, rel in files.items()},
        "rows": [{k: _clean(v) for k, v in row.items()} for row in rows],
    }
    atomic_write_text(unit.record_path(out), json.dumps(record, indent=1) + "\n")


def file_sha256_uncached(path: Path) -> str:
    file_sha256.cache_clear()  # weights are rewritten under the same path by reruns
    return file_sha256(str(path))


def read_record(path: Path) -> dict[str, Any] | None:
    """A record file's content, or None when it is unreadable (then its unit is not complete)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"key", "rows", "files"} <= record.keys() else None


def _files_intact(record: dict[str, Any], out: Path, verify: bool = True) -> bool:
    """The record's files exist with their recorded size and (``verify``) sha256. Rebuilding the tables checks
    sizes only (hashing every unit's weights after every unit would grow quadratically with the suite); whether a
    unit is complete — once per unit per invocation — checks the hashes."""
    for entry in record["files"].values():
        path = out / entry["path"]
        if not path.is_file() or ("bytes" in entry and path.stat().st_size != entry["bytes"]):
            return False
        if verify and file_sha256_uncached(path) != entry["sha256"]:
            return False
    return True


def is_complete(unit: Unit, out: Path) -> bool:
    """The unit has a record with its current key and intact files, and did not fail (a failed unit is
    recorded, so results.csv shows why, but runs again on the next invocation)."""
    path = unit.record_path(out)
    if not path.is_file():
        return False
    record = read_record(path)
    return (record is not None and record["key"] == unit.key and record.get("status") != "failed"
            and _files_intact(record, out))


def iter_records(out: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every readable record under ``out/units``, in path order."""
    for path in sorted((Path(out) / UNITS_DIR).glob("*/*.json")):
        record = read_record(path)
        if record is not None:
            yield path, record


def collect_rows(out: Path, units: list[Unit]) -> list[dict[str, Any]]:
    """results.csv's rows, rebuilt from the records: the complete units of ``units`` (in their order), then every
    other record in the folder (units of models or seeds this invocation did not select, kept, in path order). A
    record of a selected unit whose key is not the current one is left out: that unit must run again."""
    wanted = {u.record_path(out).resolve(): u for u in units}
    rows: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    by_path = dict(iter_records(out))
    for unit in units:
        record = by_path.get(unit.record_path(out))
        if record is not None and record["key"] == unit.key and _files_intact(record, out, verify=False):
            rows += record["rows"]
    for path, record in by_path.items():
        if path.resolve() not in wanted and _files_intact(record, out, verify=False):
            others += record["rows"]
    return rows + others


class UnitLock:
    """Non-blocking ownership of one unit across processes (``filelock``)."""

    def __init__(self, unit: Unit, out: Path) -> None:
        path = unit.lock_path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(path))

    def acquire(self) -> bool:
        """True if this process now owns the unit; False if another process does."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


def results_lock(out: Path) -> FileLock:
    """The lock held while results.csv and the leaderboards of ``out`` are rebuilt."""
    Path(out).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(out) / RESULTS_LOCK))
