"""The import-free catalog of names lists exactly what the registries hold."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import catalog


def _registry(kind: str):
    if kind == "model":
        from models import MODELS

        return MODELS
    if kind == "datamodule":
        from datamodules import DATAMODULES

        return DATAMODULES
    if kind == "metric":
        from bench.metrics import METRICS

        return METRICS
    from bench.backbones import BACKBONES

    return BACKBONES


@pytest.mark.parametrize("kind", sorted(catalog.NAMES))
def test_catalog_matches_registry(kind: str) -> None:
    assert catalog.names(kind) == sorted(_registry(kind).names())


def test_metric_backbone_fields_match_kinds() -> None:
    from bench.metrics import METRICS
    from bench.metrics.base import BACKBONE_FIELD_OF_KIND

    derived = {m: BACKBONE_FIELD_OF_KIND[METRICS.get(m).input_kind] for m in METRICS.names()
               if METRICS.get(m).input_kind in BACKBONE_FIELD_OF_KIND}
    assert derived == catalog.METRIC_BACKBONE_FIELD


def test_suite_parsing_imports_no_torch(tmp_path) -> None:
    """Loading and checking a suite file (names included) must not import torch or Lightning."""
    code = ("import sys; from bench.suites import load_suite; load_suite('quick'); load_suite('fusion'); "
            "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
