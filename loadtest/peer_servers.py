"""The peers' servers for the bench: Redis and NATS (JetStream), when installed.

A peer counts as installed when its server is on PATH (or in /usr/sbin,
where Debian puts nats-server) and its Python client imports (``make
bench-peers`` installs both). Each server runs on free loopback ports in a
temporary folder and is stopped by pid. Redis keeps an append-only file
(``appendfsync everysec``) and JetStream file storage, so that each writes
to disk as Rill does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rill.cluster.layout import free_ports

HOST = "127.0.0.1"
START_TIMEOUT_S = 30
NOT_INSTALLED = "not installed (make bench-peers)"


def server_path(name: str) -> str | None:
    """The server binary on PATH or in /usr/sbin; None if it is not there."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def installed(server: str, module: str) -> bool:
    """Whether ``server`` is there and the Python client ``module`` imports."""
    return server_path(server) is not None and importlib.util.find_spec(module) is not None


def redis_installed() -> bool:
    return installed("redis-server", "redis")


def nats_installed() -> bool:
    return installed("nats-server", "nats")


def _wait(ready: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} at start")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT_S} s")


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    """A Redis server in ``folder``; yields its port."""
    import redis

    port = free_ports(1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [server_path("redis-server"), "--port", str(port), "--bind", HOST, "--dir", str(folder), "--save", "",
         "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host=HOST, port=port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _wait(answers, process, "redis-server")
        client.close()
        yield port
    finally:
        _stop([process])


class NatsCluster:
    """Running nats-server processes (one, or three in a cluster) and their client URLs."""

    def __init__(self, processes: list[subprocess.Popen], client_ports: list[int]):
        self.processes = processes
        self.urls = [f"nats://{HOST}:{port}" for port in client_ports]

    def kill(self, index: int) -> None:
        """kill -9 of server ``index`` (named n<index>)."""
        os.kill(self.processes[index].pid, signal.SIGKILL)
        self.processes[index].wait(timeout=10)


@contextmanager
def nats_servers(folder: Path, count: int) -> Iterator[NatsCluster]:
    """``count`` JetStream servers (a cluster when more than one), named n0, n1, ...; yields them."""
    ports = free_ports(2 * count)
    client_ports, cluster_ports = ports[:count], ports[count:]
    processes = []
    try:
        for index in range(count):
            store = folder / f"n{index}"
            store.mkdir(parents=True, exist_ok=True)
            command = [server_path("nats-server"), "-js", "-sd", str(store), "-a", HOST,
                       "-p", str(client_ports[index]), "--server_name", f"n{index}"]
            if count > 1:
                routes = ",".join(f"nats://{HOST}:{port}" for port in cluster_ports)
                command += ["--cluster_name", "bench", "--cluster", f"nats://{HOST}:{cluster_ports[index]}",
                            "--routes", routes]
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for process, port in zip(processes, client_ports):
            _wait(lambda: _accepts(port), process, "nats-server")
        yield NatsCluster(processes, client_ports)
    finally:
        _stop(processes)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((HOST, port)) == 0
