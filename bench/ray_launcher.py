"""``bench run --launcher ray``: the suite's units as Ray tasks on a cluster (or a local Ray instance).

The driver (this process) does everything that writes shared state: it checks the suite (preflight), takes each
pending unit's lock, submits one task per unit, and writes each unit's completion record and results.csv as the
outcomes arrive — exactly what the local launcher writes, so the final files are the same. A task runs
:func:`bench.runner.execute_unit` in a Ray worker: it trains and scores the unit and writes its weights, sample
grid, logs and checkpoints under ``--out``, which therefore must be a folder every node sees (a shared
filesystem on a real cluster; this machine's disk for a local cluster).

Each task asks for its resources: ``--threads-per-unit`` CPUs (default 1) and, with ``--accelerator gpu``,
``--devices`` GPUs. A task whose worker process or node dies is retried by Ray up to ``--max-retries`` times
(default 2); after that, or when the unit itself raises, it is recorded as ``failed`` with the reason, the other
units go on, and rerunning the command runs it again. A retried unit resumes from its last checkpoint.

Ray is optional (``pip install 'genfusion-bench[distributed]'``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from bench.runner import RunOptions, _rebuild_results, execute_unit, record_unit, result_line, unit_rows
from bench.spec import SpecError, SuiteSpec
from bench.units import Unit, UnitLock


def _ray():
    try:
        import ray
    except ImportError as err:
        raise SpecError("--launcher ray needs Ray: pip install 'genfusion-bench[distributed]' (or `pip install ray`)") from err
    return ray


def run_units_on_ray(spec: SuiteSpec, pending: list[tuple[int, Unit, Any, Any, Any]], opts: RunOptions,
                     all_units: list[Unit], say: Callable[..., None]) -> None:
    """Runs the ``pending`` units as Ray tasks and records their outcomes as they finish.

    Raises:
        KeyboardInterrupt: on SIGINT / SIGTERM (the running tasks are cancelled; complete units are kept).
    """
    ray = _ray()
    out = opts.out_dir
    address = opts.ray_address or os.environ.get("RAY_ADDRESS")
    threads = opts.threads_per_unit or 1
    env = {k: v for k, v in os.environ.items() if k in ("BENCH_CACHE_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                        "FASHION_MNIST_DIR", "MNIST_DIR", "CIFAR10_DIR",
                                                        "FLICKR30K_DIR", "BENCH_INCEPTION_WEIGHTS",
                                                        "EFFICIENTNET_LITE0_WEIGHTS")}
    env["OMP_NUM_THREADS"] = str(threads)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or "local", log_to_driver=False, include_dashboard=False, runtime_env={"env_vars": env},
                 configure_logging=False,
                 # a local instance stays on the loopback interface (Ray would otherwise advertise the host's IP)
                 **({} if address else {"num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1"}))
    worker_opts = dataclasses.replace(opts, console=None, threads_per_unit=threads)
    gpus = opts.devices if opts.accelerator in ("gpu", "cuda") and isinstance(opts.devices, int) else 0
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=opts.max_retries)(execute_unit)
    running: dict[Any, tuple[Unit, UnitLock, str]] = {}
    done = failed = 0
    try:
        for i, unit, *_ in pending:
            lock = UnitLock(unit, out)
            where = unit.progress(i, len(all_units))
            if not lock.acquire():
                say(f"{where}: running in another process, left to it")
                continue
            running[task.remote(spec, unit, worker_opts)] = (unit, lock, where)
        say(f"ray: {len(running)} units submitted ({threads} CPU{'s' if threads > 1 else ''}"
            f"{f', {gpus} GPU' if gpus else ''} each) to {address or 'a local Ray instance'}")
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            unit, lock, where = running.pop(ready[0])
            try:
                rows, files = ray.get(ready[0])
            except Exception as err:  # the worker or node died more than max_retries times
                track = next(t for t in spec.tracks if t.name == unit.track)
                message = f"{type(err).__name__}: {str(err).splitlines()[0]}"[:500]
                model_args = track.models.get(unit.label, {})  # {} for the real-data reference unit
                rows, files = unit_rows(spec, track, unit, model_args, None, "failed", message, []), {}
            record_unit(unit, out, rows, files)
            lock.release()
            status = rows[0]["status"]
            done += status != "failed"
            failed += status == "failed"
            track = next(t for t in spec.tracks if t.name == unit.track)
            say(f"{where}: {result_line(track, rows)} (done {done}, running {len(running)}, failed {failed})")
            _rebuild_results(out, all_units)
    except BaseException:
        for ref, (_, lock, _) in running.items():
            ray.cancel(ref, force=True)
            lock.release()
        raise
    finally:
        if started_here:
            ray.shutdown()
