"""Warnings on the terminal: each one once per command, in one line, without the library path it came from.

Python's default format prints ``/long/site-packages/path.py:699: UserWarning: message`` and the source line
under it, and the small-sample FID warning repeated after every generator run. :func:`one_line_warnings` prints
``bench: warning: message`` once per distinct message while a command runs; the standard ``warnings`` filters
(``-W``, ``PYTHONWARNINGS``) still decide which warnings are shown at all.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def one_line_warnings(stream: TextIO | None = None) -> Iterator[set[str]]:
    """Within the block, every warning is printed once, as one line, on ``stream`` (default stderr).

    Yields:
        The set of messages printed so far.
    """
    seen: set[str] = set()
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' API
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        (stream or sys.stderr).write(f"bench: warning: {text}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # de-duplicated here by message, not per code location by Python
        warnings.showwarning = show
        try:
            yield seen
        finally:
            warnings.showwarning = original
