"""The registered names, known without importing torch or Lightning.

Suite files are checked against these names before any heavy import, so a typo in a suite file fails in a
fraction of a second instead of after the 5-10 s it takes to import the models. The registries
(:data:`models.MODELS`, :data:`datamodules.DATAMODULES`, :data:`bench.metrics.METRICS`,
:data:`bench.backbones.BACKBONES`) stay the source of truth: ``tests/test_catalog.py`` fails when a name is
registered but missing here, or listed here but not registered, and the runner's preflight checks every name
against the registries again before training.

Plugins (:mod:`bench.plugins`) count by their entry-point names, read from the installed distributions' metadata
without importing the plugin: a suite naming a plugin's model passes this check, and the plugin is imported (and
refused in one line if it is broken) when the runner looks the name up.
"""

from __future__ import annotations

import sys
from typing import Any

from bench import plugins

MODEL_NAMES: frozenset[str] = frozenset({
    "beta-vae", "dcgan", "early-concat", "gpt", "info-vae", "late-average", "late-stacking", "late-weighted", "lsgan",
    "maskgit", "mid-attention", "mid-concat", "mid-cross-attention", "mid-gated", "mid-lowrank-tensor", "mid-sum",
    "mid-tensor", "mmvae", "mopoe", "mvae-early", "mvae-late", "mvae-mid", "progan", "stylegan", "text2image-gpt",
    "transformer-xl", "unimodal-image", "unimodal-text", "vae", "vit", "vq-vae", "wgan", "wgan-gp",
})
DATAMODULE_NAMES: frozenset[str] = frozenset({
    "captioned-digits", "captioned-fashion-mnist", "cifar10", "digits", "fashion-mnist", "flickr30k",
    "fusion-fashion-mnist", "hateful-memes", "mm-imdb", "mnist",
})
METRIC_NAMES: frozenset[str] = frozenset({
    "accuracy", "authpct", "class-coverage", "clip-score", "clip-score-real", "cmmd", "coherence", "coherence-real",
    "cross-fid", "cross-kid", "f1-macro", "fd", "fid", "is", "joint-coherence", "joint-coherence-real", "kd", "kid",
    "memorization", "mse", "nll-bpd", "per-class-fid", "prc", "psnr", "recognizable", "robustness", "ssim", "vendi",
})
BACKBONE_NAMES: frozenset[str] = frozenset({
    "classifier-indomain-digits", "classifier-indomain-fashion", "clip-indomain-fashion", "clip-vit-b-32",
    "dinov2-vits14", "efficientnet-lite0", "inception-v3-compat",
})
#: The ``eval`` field naming the extra backbone a metric is scored with (from its requests:
#: ``bench.metrics.requests.backbone_fields``).
METRIC_BACKBONE_FIELD: dict[str, str] = {
    "clip-score": "clip_backbone", "clip-score-real": "clip_backbone",
    "coherence": "classifier_backbone", "coherence-real": "classifier_backbone",
    "per-class-fid": "classifier_backbone", "class-coverage": "classifier_backbone",
    "recognizable": "classifier_backbone",
    "joint-coherence": "classifier_backbone", "joint-coherence-real": "classifier_backbone",
}

#: The label of the ``real-data`` reference row (:mod:`bench.reference`): reserved, never a model label in a suite.
REFERENCE_LABEL = "real-data"

def reference_split(real_split: str) -> str:
    """The real split the reference row's images come from: disjoint from the reference split ``real_split``."""
    return "test" if real_split == "train" else "train"


#: The metrics ``bench eval`` scores between two image sets (IS and vendi on the generated set alone; authpct and
#: memorization against ``--train``).
EVAL_METRICS: tuple[str, ...] = (
    "fid", "kid", "is", "prc", "fd", "kd", "cmmd", "vendi", "authpct", "memorization",
)

NAMES: dict[str, frozenset[str]] = {
    "model": MODEL_NAMES, "datamodule": DATAMODULE_NAMES, "metric": METRIC_NAMES, "backbone": BACKBONE_NAMES,
}


#: Where each kind's registry lives (module, attribute).
_REGISTRIES = {"model": ("models", "MODELS"), "datamodule": ("datamodules", "DATAMODULES"),
               "metric": ("bench.metrics", "METRICS"), "backbone": ("bench.backbones", "BACKBONES"),
               "suite": ("bench.suites", "SUITES"), "fusion": ("models.fusion.operators", "FUSIONS")}


def registry(kind: str) -> Any:
    """The registry of ``kind`` (``model``, ``datamodule``, ``metric``, ``backbone``, ``suite``, ``fusion``),
    importing its module (a heavy import for all but suites)."""
    import importlib

    module, attr = _REGISTRIES[kind]
    return getattr(importlib.import_module(module), attr)


def _loaded_registry(kind: str) -> Any:
    """The registry of ``kind`` if its module is already imported (never imports it), else None."""
    module, attr = _REGISTRIES[kind]
    return getattr(sys.modules.get(module), attr, None)


def registered(kind: str) -> frozenset[str]:
    """The names of ``kind`` (``model``, ``datamodule``, ``metric``, ``backbone``): the built-in ones, the
    installed plugins' entry-point names (never importing a plugin), and those registered at run time (tests,
    user code) when the registry is already imported."""
    known = NAMES[kind] | plugins.names(kind)
    registry = _loaded_registry(kind)
    return known | frozenset(registry.names()) if registry is not None else known


def is_registered(kind: str, name: object) -> bool:
    """Whether ``name`` is a registered ``kind`` (see :func:`registered`)."""
    return isinstance(name, str) and name in registered(kind)


def names(kind: str) -> list[str]:
    """The sorted registered names of ``kind`` (see :func:`registered`)."""
    return sorted(registered(kind))


def metric_backbone_field(metric: str) -> str | None:
    """The ``eval`` field naming the extra backbone ``metric`` is scored with, or None."""
    if metric in METRIC_BACKBONE_FIELD:
        return METRIC_BACKBONE_FIELD[metric]
    registry = _loaded_registry("metric")
    if registry is not None and metric in registry:  # registered at run time: ask the metric itself
        from bench.metrics.base import probe_requests
        from bench.metrics.requests import backbone_fields

        try:
            fields = backbone_fields(probe_requests(registry.get(metric)))
        except Exception:  # noqa: BLE001  a metric that cannot be built is reported by the runner's preflight
            return None
        return min(fields) if fields else None
    return None
