"""Peak memory of one run: the process's resident set size on CPU, allocated device memory on CUDA."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil
import torch


class PeakMemory:
    """Context manager measuring the peak memory in MiB while its block runs (``.peak_mb`` afterwards).

    On CPU a daemon thread samples the process RSS every ``interval`` seconds (the kernel's own ``ru_maxrss`` is a
    lifetime peak, so it cannot give one run's peak); the result includes what the process already held (Python,
    torch, cached features). With CUDA, torch's ``max_memory_allocated`` after resetting its peak is used instead.

    Args:
        device: ``"cuda"`` to measure device memory, anything else for the process RSS.
        interval: Sampling period of the RSS thread in seconds.
    """

    def __init__(self, device: str = "cpu", interval: float = 0.05) -> None:
        self.cuda = device == "cuda" and torch.cuda.is_available()
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        process = psutil.Process()
        while True:
            self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.cuda:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
