"""DDP of one unit under torchrun on CPU (gloo, 127.0.0.1): two processes on one "node", and two "nodes" of one
process each (two torchrun invocations). Every rank trains each unit; rank 0 alone scores and writes; the scores
equal a single process scoring the DDP-trained weights, and both layouts train to the same numbers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_units import KEY_COLUMNS, results, tiny_suite, write_suite


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--master-addr", "127.0.0.1", *args]


def _bench_args(suite: Path, out: Path, *extra: str) -> list[str]:
    """torchrun's script part: ``-m bench run ...`` on the vae of the tiny suite (two seeds: two units)."""
    return ["-m", "bench", "run", "--suite", str(suite), "--models", "vae", "--accelerator", "cpu",
            "--strategy", "ddp", "--out", str(out), "--json", *extra]


def _env(cache: Path) -> dict[str, str]:
    import os

    return {**os.environ, "BENCH_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}


def _single_process_scores(suite: Path, out: Path, seed: int) -> dict[str, float]:
    """Scores the DDP run's saved weights in this process, with the suite's own evaluator, on one thread as the
    ranks ran (the thread count changes float summation order in the backbone)."""
    import torch

    from bench.runner import RunOptions, build_evaluators, prepare
    from bench.suites import load_suite
    from models import MODELS

    spec = load_suite(str(suite)).with_overrides(models=["vae"])
    dms, backbones = prepare(spec)
    evaluator = build_evaluators(spec, backbones, RunOptions(out_dir=out))["gen"]
    model = MODELS.get("vae").load_weights(out / "weights" / "gen" / f"vae-digits-seed{seed}.pt")
    dm = next(iter(dms.values()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {s.metric: s.value for s in evaluator.evaluate(model, dm, seed)}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_ddp_of_a_unit_on_two_processes_and_on_two_nodes(tmp_path):
    cache = tmp_path / "cache"
    suite = write_suite(tmp_path, tiny_suite(max_epochs=1))
    env = _env(cache)

    one_node = tmp_path / "one-node"
    proc = subprocess.run(
        _torchrun("--nproc-per-node", "2", "--master-port", str(_port()))
        + _bench_args(suite, one_node, "--devices", "2"),
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sorted((one_node / "units" / "gen").glob("*.json"))
    assert [p.name for p in records] == ["vae-digits-seed0.json", "vae-digits-seed1.json"]
    assert proc.stdout.count('"suite"') == 1  # only rank 0 reports
    for seed, path in enumerate(records):
        recorded = {r["metric"]: r["value"] for r in json.loads(path.read_text())["rows"]}
        assert json.loads(path.read_text())["status"] == "ok"
        assert recorded == pytest.approx(_single_process_scores(suite, one_node, seed), rel=1e-6)  # seen 3e-7 on kid under load

    two_nodes = tmp_path / "two-nodes"
    port = _port()
    procs = [
        subprocess.Popen(
            _torchrun("--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1", "--master-port", str(port))
            + _bench_args(suite, two_nodes, "--devices", "1", "--num-nodes", "2"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    a, b = results(one_node), results(two_nodes)
    assert a[KEY_COLUMNS].equals(b[KEY_COLUMNS])
    assert a["value"].tolist() == b["value"].tolist()  # world size 2 either way: the same training
