"""Checks of a model's suite arguments against its ``__init__`` annotations, and of its size, before it is built.

A suite value of the wrong type (``lr: "fast"``) used to be accepted and fail only inside training; a size that
is a typo (``width: 100000``) used to allocate until the machine ran out of memory. :func:`check_hparam_types`
turns the first into a one-line error at preflight, :func:`parameter_count` counts a model's parameters on
PyTorch's ``meta`` device (no memory is allocated), so the runner can refuse one beyond
:data:`MAX_PARAMETERS` before building it for real.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import torch

#: Largest model the runner builds (4 bytes each: 8 GB of float32 weights, before optimizer state).
MAX_PARAMETERS = 2_000_000_000


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` (from YAML) fits annotation ``tp``; annotations it does not understand accept anything."""
    if tp is Any or tp is typing.Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list, typing.Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return len(args) != 1 or all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True


def _describe(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_hparam_types(cls: type, hparams: dict[str, Any]) -> None:
    """Checks every value of ``hparams`` against the annotation of ``cls.__init__``'s parameter of that name.

    Raises:
        TypeError: Naming the argument, the value found and the type accepted.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that cannot be resolved: nothing to check against
        return
    for name, value in hparams.items():
        if name in hints and not _matches(value, hints[name]):
            raise TypeError(f"argument {name!r} must be {_describe(hints[name])}, got {value!r}")


def parameter_count(build: typing.Callable[[], torch.nn.Module]) -> int | None:
    """Parameters of the module ``build()`` returns, built on the ``meta`` device (shapes only, no memory).

    Returns:
        The count, or None when the module cannot be built on ``meta`` (it then gets built normally).
    """
    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # e.g. a model that loads a weights file while it is built
        return None
    return sum(p.numel() for p in module.parameters())
