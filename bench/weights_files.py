"""Reading weights files the suite is handed: one safe reader and one strict loader for every backbone and model.

A weights file is external input. Whatever is wrong with it — a path that is a folder, an empty, truncated or
random file, a pickle of Python objects, a payload that is not a state dict, a state dict of another network —
becomes one :class:`~bench.errors.InputError` (by default a
:class:`~bench.backbones.base.BackboneWeightsError`) whose single line names the file, says what was found and
what is accepted; never an ``UnpicklingError`` or a multi-line ``load_state_dict`` traceback.

Files are read with ``torch.load(path, map_location="cpu", weights_only=True)`` (never ``weights_only=False``:
unpickling arbitrary objects can run code), or with ``safetensors.torch.load_file`` when the name ends in
``.safetensors``. :func:`load_into` loads with ``strict=True``.

Used by ``efficientnet-lite0``, ``inception-v3-compat``, the open_clip backbones, the in-domain evaluators and
:meth:`models.base.BenchModule.load_weights` (e.g. a ``tokenizer_weights`` file).
"""

from __future__ import annotations

import os
import pickle
import stat
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bench.errors import InputError

#: What :func:`read_state_dict` accepts, for error messages.
ACCEPTED = (
    "a state dict (parameter name -> tensor) saved with torch.save and readable with torch.load(weights_only=True), "
    "or a .safetensors file"
)
#: How many key names an error message lists.
_SHOWN = 3

# What torch.load / the weights-only unpickler raise on bytes that are not a (complete) torch.save file. Random
# bytes give UnpicklingError, an empty file EOFError, a truncated zip archive OSError or RuntimeError
# ("PytorchStreamReader failed ..."), a truncated legacy file RuntimeError ("unexpected EOF"), a damaged pickle
# UnicodeDecodeError (a ValueError) or, from the pickle machinery on garbage, the lookup / struct errors; the
# legacy (pre-zip) reader asserts on a damaged storage key, and a damaged size field can ask for any allocation.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError,
    KeyError, IndexError, TypeError, AttributeError, struct.error, OverflowError, AssertionError, MemoryError,
)


class WeightsFileError(InputError, RuntimeError):
    """A model weights file (not a backbone's) cannot be used; the message says which file and what is accepted."""


def _default_error() -> type[InputError]:
    # imported here: bench.backbones imports this module while its package initializes
    from bench.backbones.base import BackboneWeightsError

    return BackboneWeightsError


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a weights file (``"does not exist"``, ``"is a directory, not a file"``, ...), or
    None when it is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as err:
        return f"cannot be accessed ({type(err).__name__}: {err.strerror or err})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def _reason(err: BaseException) -> str:
    """The informative part of a reader's error, on one line (torch's weights-only message is a paragraph of
    advice, including re-running with ``weights_only=False``, which this suite never does)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = text.split(" Please use ", 1)[0]  # drop the add_safe_globals advice
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0].split(". ", 1)[0] if lines else "no message"  # miniz's errors go on with advice
    return f"{type(err).__name__}: {line[:200]}"


def _what_it_is(err: BaseException) -> str:
    if isinstance(err, PermissionError):
        return "this user may not read it"
    if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
        return "it pickles Python objects other than tensors, which weights_only=True refuses"
    return "it is not a torch.save file, or it is truncated or corrupt"


def read_payload(
    path: str | os.PathLike,
    what: str,
    *,
    accepted: str = ACCEPTED,
    hint: str = "",
    error: type[InputError] | None = None,
) -> Any:
    """Whatever a weights file holds, read safely: ``.safetensors`` with safetensors, anything else with
    ``torch.load(path, map_location="cpu", weights_only=True)``.

    Args:
        path: The file.
        what: Who reads it, the first word of every message (e.g. ``"efficientnet-lite0"``).
        accepted: What is accepted, for the messages.
        hint: Extra advice appended to the messages (e.g. how to re-create the file).
        error: The :class:`InputError` subclass raised; default ``BackboneWeightsError``.

    Raises:
        InputError: (``error``) The path is not a regular file, or it cannot be read.
    """
    error = error or _default_error()
    tail = f"; accepted: {accepted}" + (f"; {hint}" if hint else "")
    problem = file_problem(path)
    if problem is not None:
        raise error(f"{what}: weights file {path} {problem}{tail}")
    if str(path).endswith(".safetensors"):
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as err:
            raise error(
                f"{what}: weights file {path} is a .safetensors file but the safetensors package is not installed "
                f"(`pip install safetensors`){tail}"
            ) from err
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise error(
                f"{what}: weights file {path} cannot be read as safetensors ({_reason(err)}); it is truncated or "
                f"corrupt{tail}"
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as err:
        raise error(
            f"{what}: weights file {path} cannot be read with torch.load(weights_only=True) ({_reason(err)}); "
            f"{_what_it_is(err)}{tail}"
        ) from err


def check_state_dict(
    payload: Any,
    path: str | os.PathLike,
    what: str,
    *,
    unwrap: bool = False,
    accepted: str = ACCEPTED,
    hint: str = "",
    error: type[InputError] | None = None,
) -> dict[str, torch.Tensor]:
    """``payload`` as a state dict (str → Tensor), or an error naming ``path``.

    Args:
        payload: What the file (or one entry of it) holds.
        path: The file, for the messages.
        what: Who reads it, the first word of every message.
        unwrap: Also accept a training checkpoint ``{"state_dict": {...}, ...}`` and strip DDP's ``module.``
            prefix when every key has it (open_clip's checkpoints).
        accepted: What is accepted. hint: Extra advice. error: The error type (default ``BackboneWeightsError``).

    Returns:
        The mapping itself when nothing was unwrapped (an ``OrderedDict`` keeps the ``_metadata`` versions that
        ``load_state_dict`` uses), else a new dict.

    Raises:
        InputError: (``error``) Not a non-empty mapping of str to tensors.
    """
    error = error or _default_error()
    tail = f"; accepted: {accepted}" + (f"; {hint}" if hint else "")
    if unwrap and isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping):
        raise error(f"{what}: weights file {path} holds a {type(payload).__name__!r}, not a state dict{tail}")
    if not payload:
        raise error(f"{what}: weights file {path} holds an empty mapping, not a state dict{tail}")
    for key, value in payload.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise error(
                f"{what}: weights file {path} is not a state dict: entry {key!r} holds a {type(value).__name__!r}, "
                f"not a tensor{tail}"
            )
    if unwrap and all(k.startswith("module.") for k in payload):
        return {k[len("module."):]: v for k, v in payload.items()}
    return payload  # type: ignore[return-value]


def read_state_dict(
    path: str | os.PathLike,
    what: str,
    *,
    unwrap: bool = False,
    accepted: str = ACCEPTED,
    hint: str = "",
    error: type[InputError] | None = None,
) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: :func:`read_payload` then :func:`check_state_dict` (same arguments).

    Raises:
        InputError: (``error``) The file is missing, unreadable, or holds no state dict.
    """
    kwargs = {"accepted": accepted, "hint": hint, "error": error}
    return check_state_dict(read_payload(path, what, **kwargs), path, what, unwrap=unwrap, **kwargs)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def mismatch_summary(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Counts and first names of the keys ``state`` lacks, the keys it has in excess, and the tensors whose shape
    differs from ``module``'s; ``""`` when they agree."""
    expected = module.state_dict()
    # load_state_dict itself fills in a missing BatchNorm num_batches_tracked (state dicts from before it
    # existed), so its absence is never why a load failed: listing it would only mislead.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(expected)} key(s) missing ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_names(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape ({_names(shapes)})")
    return "; ".join(parts)


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    what: str,
    *,
    target: str | None = None,
    hint: str = "",
    error: type[InputError] | None = None,
) -> None:
    """``module.load_state_dict(state, strict=True)``, with a one-line error on a mismatch.

    Args:
        module: The network to fill.
        state: Its state dict, e.g. from :func:`read_state_dict`.
        path: The file it came from, for the message.
        what: Who loads it, the first word of the message.
        target: The network, in words (default the module's class name).
        hint: What the file must be instead (default: the state dict of ``target``).
        error: The error type (default ``BackboneWeightsError``).

    Raises:
        InputError: (``error``) Missing or unexpected keys or tensors of another shape, with their counts and
            first few names.
    """
    error = error or _default_error()
    target = target or type(module).__name__
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        # torch's message lists every key, one per line; the summary counts them and names a few
        summary = mismatch_summary(module, state) or _reason(err)
        raise error(
            f"{what}: weights file {path} does not fit {target} (strict load: {summary}); "
            f"{hint or f'it must be the state dict of {target}'}"
        ) from err

