"""The import-free catalog of names lists exactly what the registries hold."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import catalog


@pytest.mark.parametrize("kind", sorted(catalog.NAMES))
def test_catalog_matches_registry(kind: str) -> None:
    assert catalog.names(kind) == sorted(catalog.registry(kind).names())


def test_metric_backbone_fields_match_requests() -> None:
    """catalog's table of extra backbone fields equals what each metric's requests need."""
    from bench.metrics import METRICS
    from bench.metrics.base import probe_requests
    from bench.metrics.requests import backbone_fields

    derived = {}
    for m in METRICS.names():
        fields = backbone_fields(probe_requests(METRICS.get(m)))
        assert len(fields) <= 1, f"{m} needs two extra backbones"
        if fields:
            derived[m] = fields.pop()
    assert derived == catalog.METRIC_BACKBONE_FIELD


def test_eval_metrics_are_those_image_sets_answer() -> None:
    """bench eval offers exactly the registered metrics that two image sets (and a training set) can answer."""
    import torch

    from bench.evaluate import ImageSetSubject
    from bench.metrics import METRICS
    from bench.metrics.base import probe_requests

    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    subject = ImageSetSubject({"real": images, "fake": images, "train": images})
    answerable = sorted(m for m in METRICS.names()
                        if all(subject.can_answer(r) for r in probe_requests(METRICS.get(m))))
    assert answerable == sorted(catalog.EVAL_METRICS)


def test_suite_parsing_imports_no_torch(tmp_path) -> None:
    """Loading and checking a suite file (names included) must not import torch or Lightning."""
    code = ("import sys; from bench.suites import load_suite; load_suite('quick'); load_suite('fusion'); "
            "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugin_names_count_without_importing_the_plugin(tmp_path) -> None:
    """An installed distribution's entry-point names (:mod:`bench.plugins`) are catalog names, read from its
    metadata only: the plugin's module (which raises when imported) is not imported, nor torch; once the
    registries are imported, catalog and registries still list the same names."""
    import os

    from bench.plugins import GROUPS

    info = tmp_path / "catalog_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: catalog-probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\nprobe-{kind} = catalog_probe:Thing\n" for kind, group in GROUPS.items() if kind in catalog.NAMES
    ))
    (tmp_path / "catalog_probe.py").write_text("raise RuntimeError('the plugin was imported')\n")
    code = ("import sys; from bench import catalog; "
            "print(sorted(n for k in catalog.NAMES for n in catalog.registered(k) if n.startswith('probe-'))); "
            "print(sorted(m for m in ('torch', 'lightning', 'numpy', 'catalog_probe') if m in sys.modules)); "
            "import models, datamodules, bench.metrics, bench.backbones; "
            "print(all(catalog.names(k) == sorted(catalog._loaded_registry(k).names()) for k in catalog.NAMES), "
            "'catalog_probe' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.splitlines() == [str(sorted(f"probe-{k}" for k in catalog.NAMES)), "[]", "True False"]
