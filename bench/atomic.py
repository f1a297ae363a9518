"""Atomic, durable file writes: a temporary file in the same folder, flushed and fsynced, then renamed over the
target, readable as the umask allows (not ``mkstemp``'s 0600).

A reader (or an interrupted run) therefore sees either the old complete file or the new complete file, never a
truncated one. Temporary files are named ``.<name>.<host>.<pid>.<random>.tmp``, so
:func:`remove_stale_temporaries` can delete those whose writing process on this host no longer exists (a
``kill -9`` mid-write) without touching another live process's file, here or on another node sharing the folder.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
