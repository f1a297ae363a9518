"""One way to build a registered backbone from the options of a suite or of ``bench eval``."""

from __future__ import annotations

from typing import Any

from bench.backbones.base import FeatureBackbone
from bench.backbones.registry import BACKBONES


def build_backbone(
    name: str, size: int | None = None, resize: str | None = None, weights_path: str | None = None
) -> FeatureBackbone:
    """``BACKBONES.get(name)(...)`` passing only the options that were given, so each backbone keeps its defaults.

    Args:
        name: Registered backbone name.
        size: Input side (None: the backbone's own).
        resize: Resize mode (None: the backbone's default; see :mod:`bench.backbones.resize`).
        weights_path: Weights file instead of the default one.

    Raises:
        UnknownNameError: Unknown backbone. ValueError: A size or mode the backbone does not accept.
        BackboneWeightsError: The weights cannot be found.
    """
    kwargs: dict[str, Any] = {}
    if size is not None:
        kwargs["size"] = size
    if resize is not None:
        kwargs["resize_mode"] = resize
    if weights_path is not None:
        kwargs["weights_path"] = str(weights_path)
    return BACKBONES.get(name)(**kwargs)
