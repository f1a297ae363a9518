"""Runs a function on several CPU processes joined by a gloo process group (for metric-sync tests)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, queue: Any, fn: Callable[[int, int], Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(rank, world)
        if rank == 0:
            queue.put(result)
    finally:
        dist.destroy_process_group()


def run_on_gloo_ranks(fn: Callable[[int, int], Any], world: int = 2, timeout: float = 120) -> Any:
    """Calls ``fn(rank, world)`` in ``world`` spawned processes inside one gloo group; returns rank 0's result.

    ``fn`` must be a module-level function (spawned processes import it by name). Every process must exit with 0.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, queue, fn)) for r in range(world)]
    for p in procs:
        p.start()
    result = queue.get(timeout=timeout)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return result
