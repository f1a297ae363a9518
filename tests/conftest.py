"""Shared test setup: never reach the network, and keep caches inside pytest's tmp dirs."""

import os

# Set before anything imports huggingface_hub / datasets (they read these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """Points ``$BENCH_CACHE_DIR`` (the real-feature cache) at a fresh temporary folder and returns it."""
    cache = tmp_path / "bench-cache"
    cache.mkdir()
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """``Trainer(deterministic=...)`` and the runner flip a process-wide torch flag; put it back after every test."""
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
