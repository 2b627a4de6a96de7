"""Real broker processes for tests: free loopback ports, a temp data dir, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from rill.client import Admin
from rill.client.errors import RillError

READY_TIMEOUT_S = 60.0


def free_ports(count: int) -> list[int]:
    """Ports the kernel calls free right now (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class BrokerProcess:
    """One `rill node` process with its own ports and data dir."""

    def __init__(self, data_dir: Path, node_id: int = 1, topic_defaults: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.node_id = node_id
        self.port, raft_port, http_port = free_ports(3)
        self.config_path = data_dir / f"node-{node_id}.toml"
        self.log_path = data_dir / f"node-{node_id}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        defaults = "".join(f'"{k}" = "{v}"\n' for k, v in (topic_defaults or {}).items())
        self.config_path.write_text(
            f'cluster_id = "test"\nnode_id = {node_id}\ndata_dir = "{data_dir}"\nretention_check_interval_ms = 200\n'
            f"[[nodes]]\nid = {node_id}\nhost = \"127.0.0.1\"\nport = {self.port}\n"
            f"raft_port = {raft_port}\nhttp_port = {http_port}\n"
            + (f"[topic_defaults]\n{defaults}" if defaults else "")
        )
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "BrokerProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rill.cluster", "node", "--id", str(self.node_id), "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"broker exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with Admin(self.bootstrap, request_timeout_ms=500) as admin:
                    admin.list_topics()
                return True
            except RillError:
                return False

        wait_until(answers, READY_TIMEOUT_S, f"broker {self.node_id} to answer")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the broker by its pid and, for KILL and TERM, wait until it is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM if self.process.poll() is None else signal.SIGKILL)
