"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target.

A reader (or an interrupted run) therefore sees either the old complete file or the new complete file, never a
truncated one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> None:
    """Calls ``write(f)`` on a temporary file next to ``path``, then atomically replaces ``path`` with it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text))
