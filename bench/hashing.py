"""Content hashes used for provenance and cache keys."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=32)
def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes (cached per path for the life of the process)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(obj: Any, length: int = 12) -> str:
    """Short sha256 of the canonical JSON of ``obj`` (sorted keys), for grouping identical configurations."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]
