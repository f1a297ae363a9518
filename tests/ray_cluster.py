"""A real multi-node Ray cluster on this machine, for the launcher tests: a head and worker nodes started with
``ray start --block`` on loopback addresses only, stopped by the process ids this helper started (and their
descendants), even when the test fails.

Every node gets its own 127.0.0.x address (Ray resolves ``127.0.0.1`` to the host's outward IP, so the head uses
127.0.0.2 and the workers 127.0.0.3, ...): all traffic stays on the loopback interface.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HEAD_IP = "127.0.0.2"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """``with LocalRayCluster(workers=1) as cluster:`` → ``cluster.address``; ``cluster.kill_worker(0)``."""

    def __init__(self, workers: int = 1, cpus_per_node: int = 1) -> None:
        self.workers, self.cpus = workers, cpus_per_node
        self.port = _free_port(HEAD_IP)
        self.address = f"{HEAD_IP}:{self.port}"
        # short: Ray's unix socket paths must stay under ~107 characters
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        # a loopback-only test cluster: no token (the driver in another process would need it)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        self.procs: list[subprocess.Popen] = []
        self.ray = str(Path(sys.executable).with_name("ray"))

    def _start(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([self.ray, "start", "--block", "--disable-usage-stats", f"--num-cpus={self.cpus}",
                                 *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=self.env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def _alive_nodes(self) -> int:
        out = subprocess.run([self.ray, "status", f"--address={self.address}"], capture_output=True, text=True,
                             env=self.env, timeout=60)
        return out.stdout.count("node_")

    def __enter__(self) -> LocalRayCluster:
        try:
            self._start("--head", f"--node-ip-address={HEAD_IP}", f"--port={self.port}", "--include-dashboard=false",
                        f"--temp-dir={self.temp_dir}")
            time.sleep(3)
            for i in range(self.workers):
                self._start(f"--address={self.address}", f"--node-ip-address=127.0.0.{3 + i}")
            deadline = time.monotonic() + 120
            while self._alive_nodes() < 1 + self.workers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray cluster at {self.address} did not come up with {1 + self.workers} nodes")
                time.sleep(1)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Kills ``proc`` and every process it started (Ray's raylet, GCS, workers), by process id."""
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        for p in [*family, psutil.Process(proc.pid) if proc.poll() is None else None]:
            if p is None:
                continue
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=30)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass

    def kill_worker(self, index: int = 0) -> None:
        """kill -9 of worker node ``index`` and all its processes (a node failure)."""
        self._kill_tree(self.procs[1 + index])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            self._kill_tree(proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()
