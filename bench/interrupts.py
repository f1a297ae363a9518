"""SIGINT / SIGTERM during a suite: stop the current unit, keep what is complete, exit 130 / 143.

While :func:`interruptible` is active, both signals raise ``KeyboardInterrupt`` in the main thread (Lightning's
``fit`` turns that into ``SystemExit(1)`` after tearing down cleanly), and the signal is remembered so that the
runner can tell a user's interrupt from any other exit and raise :class:`SuiteInterrupted`.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class SuiteInterrupted(Exception):
    """The suite was stopped by a signal; the message says what was kept. ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class InterruptFlag:
    """Which signal (if any) stopped the suite."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            raise KeyboardInterrupt
        # a second signal while shutting down is ignored: the shutdown keeps what is complete

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def interruptible() -> Iterator[InterruptFlag]:
    """Installs the SIGINT / SIGTERM handlers for the block (main thread only) and restores the previous ones."""
    flag = InterruptFlag()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in previous:
            signal.signal(sig, flag._handler)
    except ValueError:  # not the main thread (e.g. inside a test runner thread): run without
        previous = {}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
