"""``bench run --launcher ray`` on a real two-node Ray cluster started by the test on loopback addresses: a worker
node is killed mid-suite, the suite still completes, and results.csv equals the local launcher's at equal threads
per unit. The cluster is stopped by the process ids the test started, even when it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.bench.test_units import assert_same_values, results, run, tiny_suite, write_suite

pytest.importorskip("ray", reason="ray not installed (pip install 'genfusion-bench[distributed]')")

from tests.ray_cluster import LocalRayCluster  # noqa: E402


@pytest.mark.slow
def test_suite_on_a_two_node_cluster_survives_a_killed_node(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    suite = write_suite(tmp_path, tiny_suite())
    local = tmp_path / "local"
    assert run(suite, local, "--threads-per-unit", "1") == 0
    reference = results(local)

    out = tmp_path / "ray"
    with LocalRayCluster(workers=1, cpus_per_node=1) as cluster:
        env = {**cluster.env, "BENCH_CACHE_DIR": str(cache)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--out", str(out), "--launcher", "ray",
             "--ray-address", cluster.address, "--threads-per-unit", "1", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            deadline = time.monotonic() + 300
            while not list((out / "units").glob("*/*.json")) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()[1]
            cluster.kill_worker(0)  # kill -9 of the node and every process on it, mid-suite
            _, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "units submitted" in err and "done 6, running 0, failed 0" in err
    assert_same_values(reference, results(out))
    assert (results(out)["status"] == "ok").all()


def test_ray_address_needs_the_ray_launcher(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite())
    assert run(suite, tmp_path / "out", "--ray-address", "127.0.0.2:1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--launcher ray" in err[0]
