"""Atomic, durable file writes: a temporary file in the same folder, flushed and fsynced, then renamed over the
target, readable as the umask allows (not ``mkstemp``'s 0600).

A reader (or an interrupted run) therefore sees either the old complete file or the new complete file, never a
truncated one. Temporary files are named ``.<name>.<host>.<pid>.<random>.tmp``, so
:func:`remove_stale_temporaries` can delete those whose writing process on this host no longer exists (a
``kill -9`` mid-write) without touching another live process's file, here or on another node sharing the folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO

from bench.errors import InputError

#: errno values meaning "this location cannot take the file" (not a bug of ours): full disk, quota, read-only.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class WriteError(InputError):
    """A file could not be written where it belongs (full disk, quota, read-only or forbidden folder); files that
    were complete before are untouched."""


def disk_error(err: BaseException) -> OSError | None:
    """The :data:`DISK_ERRNOS` ``OSError`` in ``err`` or its causes (libraries wrap them), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            return err
        err = err.__cause__ or err.__context__
    return None


def write_error(path: str | Path, err: OSError) -> WriteError:
    """The one-line :class:`WriteError` for ``err`` while writing ``path``."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    hint = ("free some space (or choose another --out / --cache-dir) and rerun the same command: complete units "
            "are kept" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a folder this user can write")
    return WriteError(f"cannot write {path}: {reason}; {hint}")

_TEMP_RE = re.compile(r"^\..+\.([A-Za-z0-9_-]+)\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path(path: str | Path) -> Path:
    """A fresh temporary path next to ``path`` carrying this process id."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> None:
    """Calls ``write(f)`` on a temporary file next to ``path``, then atomically replaces ``path`` with it.

    The file gets mode ``0o666 & ~umask`` (0644 under the usual umask), like a file opened normally.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        disk = disk_error(err)
        if disk is not None and not isinstance(err, WriteError):
            raise write_error(path, disk) from err
        raise


def fsync_folder(folder: str | Path) -> None:
    """Flushes a folder's entries (a rename is durable only once its folder is); a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_copy(source: str | Path, target: str | Path) -> None:
    """Copies ``source`` to ``target`` atomically (see :func:`atomic_write`)."""
    with open(source, "rb") as src:
        atomic_write(target, lambda f: shutil.copyfileobj(src, f), mode="wb")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Deletes the temporary files under ``folder`` left by writers on this host that no longer run; returns
    them."""
    removed = []
    host = _host()
    for path in Path(folder).rglob("*.tmp"):
        match = _TEMP_RE.match(path.name)
        if not match or match.group(1) != host:
            continue
        pid = int(match.group(2))
        if pid != os.getpid() and not _alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
