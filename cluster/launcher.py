"""Starts, watches, signals and stops the node processes of a local cluster.

Each node runs as ``python -m rill.cluster node --id I ...`` in its own
session (so a Ctrl-C in the terminal that started it does not reach it), with
stdout and stderr appended to ``node-<id>.log`` and its pid in
``node-<id>.pid`` (see layout.py). Processes are found again through their
pid files only, and a pid is trusted only while its command line is still
that node's, so a recycled pid never receives our signals.
"""

from __future__ import annotations

import enum
import math
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from rill.client import protocol
from rill.cluster.layout import LOCAL_HOST, ClusterError, ClusterLayout, write_layout
from rill.cluster.probe import node_answers, node_status
from rill.node.cluster_secret import ensure_secret_file
from rill.node.config import NodeConfig

READY_TIMEOUT_SECONDS = 30.0
# On SIGTERM a node first asks the controller to move its leaderships away, for up to its
# controlled_shutdown_timeout_ms when there is no controller to ask; then it flushes and stops.
STOP_TIMEOUT_SECONDS = NodeConfig.controlled_shutdown_timeout_ms / 1000 + 10.0
KILL_TIMEOUT_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.1
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 65536
START_MARKER = "==== rill cluster: starting node"
PROC = Path("/proc")


class ProcessState(enum.Enum):
    """What the operating system says about a node's process."""

    RUNNING = "running"
    STOPPED = "stopped"
    ZOMBIE = "zombie"
    GONE = "not running"

    @property
    def alive(self) -> bool:
        """The process exists and is not a zombie (a stopped process is alive: SIGCONT resumes it)."""
        return self in (ProcessState.RUNNING, ProcessState.STOPPED)


@dataclass(frozen=True)
class NodeStatus:
    """One node as ``rill cluster status`` shows it.

    ``answers`` (serves clients) is None when not probed: the process is not
    running. ``report`` is the node's own NODE_STATUS answer, None when it
    was not probed or did not answer.
    """

    node_id: int
    pid: int | None
    state: ProcessState
    answers: bool | None
    port: int
    data_dir: Path
    report: protocol.NodeStatusResponse | None = None

    @property
    def is_controller(self) -> bool | None:
        """Whether the node says it is the controller (the Raft leader); None without a report."""
        return None if self.report is None else self.report.controller_id == self.node_id


def process_state(pid: int, command: list[str]) -> ProcessState:
    """The state of ``pid`` if it runs ``command`` (interpreter aside); GONE if it does not, or no longer exists."""
    if not PROC.is_dir():
        return _state_without_proc(pid)
    try:
        actual_command = (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
        state_letter = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ProcessState.GONE
    if state_letter == "Z":
        return ProcessState.ZOMBIE
    if actual_command[1:len(command)] != command[1:]:
        return ProcessState.GONE
    return ProcessState.STOPPED if state_letter in ("T", "t") else ProcessState.RUNNING


def _state_without_proc(pid: int) -> ProcessState:
    """Where there is no /proc (macOS), a process that accepts signal 0 counts as running."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return ProcessState.GONE
    return ProcessState.RUNNING


def read_pid(layout: ClusterLayout, node_id: int) -> int | None:
    """The pid recorded for a node, or None if there is no readable pid file."""
    try:
        return int(layout.pid_file(node_id).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def node_state(layout: ClusterLayout, node_id: int) -> tuple[int | None, ProcessState]:
    """A node's recorded pid and what its process is doing now."""
    pid = read_pid(layout, node_id)
    return pid, ProcessState.GONE if pid is None else process_state(pid, node_command(layout, node_id))


def node_address(layout: ClusterLayout, node_id: int) -> str:
    """The node's client address, ``host:port``."""
    node = layout.node(node_id)
    return f"{node.host}:{node.port}"


T = TypeVar("T")
R = TypeVar("R")


def _in_parallel(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]``, the calls run at once (each probe may wait for its timeout)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(function, items))


def node_statuses(layout: ClusterLayout) -> list[NodeStatus]:
    """Every node's pid and process state and, for running nodes, whether it answers and its own report."""
    states = {node_id: node_state(layout, node_id) for node_id in layout.node_ids}
    running = [node_id for node_id, (_, state) in states.items() if state is ProcessState.RUNNING]

    def run(probe: tuple[Callable[[str], object], int]) -> object:
        function, node_id = probe
        return function(node_address(layout, node_id))

    probes = [(function, node_id) for node_id in running for function in (node_answers, node_status)]
    results = dict(zip(probes, _in_parallel(run, probes)))
    statuses = []
    for node_id, (pid, state) in states.items():
        answers, report = results.get((node_answers, node_id)), results.get((node_status, node_id))
        statuses.append(NodeStatus(node_id, pid, state, answers, layout.node(node_id).port,
                                   layout.node_data_dir(node_id), report))
    return statuses


def node_command(layout: ClusterLayout, node_id: int) -> list[str]:
    """The command line that runs one node of the layout in the foreground."""
    return [sys.executable, "-m", "rill.cluster", "node", "--id", str(node_id),
            "--data-dir", str(layout.data_dir), "--base-port", str(layout.base_port),
            "--nodes", str(layout.node_count)]


def _spawn_node(layout: ClusterLayout, node_id: int) -> subprocess.Popen:
    """Start one node in the background, its output appended to its log, and record its pid."""
    with layout.log_file(node_id).open("a") as log:
        log.write(f"{START_MARKER} {node_id} at {datetime.now(timezone.utc).isoformat()} ====\n")
        log.flush()
        process = subprocess.Popen(node_command(layout, node_id), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    layout.pid_file(node_id).write_text(f"{process.pid}\n")
    return process


def majority(layout: ClusterLayout) -> int:
    """How many nodes must run for the Raft metadata quorum: more than half of them."""
    return layout.node_count // 2 + 1


def start_nodes(layout: ClusterLayout, node_ids: list[int],
                timeout_seconds: float = READY_TIMEOUT_SECONDS) -> list[int]:
    """Start these nodes together and wait until each answers; on failure stop them and raise ClusterError.

    A node serves clients only once it has registered with the controller,
    which needs a Raft majority running. When these nodes and those already
    running make a majority, wait until each serves clients. When they do
    not (``rill cluster start 1`` with the rest of the cluster down), a node
    cannot even answer NODE_STATUS before Raft has a leader, so wait only
    until each listens on its client port, and return those nodes: they
    serve clients once enough of the others are started.
    """
    for node_id in node_ids:
        layout.check_node_id(node_id)
        pid, state = node_state(layout, node_id)
        if state.alive:
            raise ClusterError(f"node {node_id} is already running (pid {pid}); stop it first "
                               f"(rill cluster down, or rill cluster kill {node_id})")
    busy_ports = [port for node_id in node_ids for port in _ports(layout, node_id) if not _port_is_free(port)]
    if busy_ports:
        raise ClusterError(f"port(s) {', '.join(map(str, busy_ports))} on {LOCAL_HOST} are in use by another "
                           "process; stop it or choose another --base-port")
    others_running = sum(1 for node_id in layout.node_ids
                         if node_id not in node_ids and node_state(layout, node_id)[1] is ProcessState.RUNNING)
    quorum = others_running + len(set(node_ids)) >= majority(layout)
    write_layout(layout)
    ensure_secret_file(layout.data_dir)  # the nodes read it from there: Raft and inter-broker credentials
    processes: dict[int, subprocess.Popen] = {}
    try:
        for node_id in node_ids:
            processes[node_id] = _spawn_node(layout, node_id)
        wait_until_ready(layout, processes, timeout_seconds, serving_clients=quorum)
    except BaseException:
        stop_nodes(layout, list(processes))
        raise
    return [] if quorum else sorted(processes)


def _ports(layout: ClusterLayout, node_id: int) -> tuple[int, int, int, int]:
    node = layout.node(node_id)
    return node.port, node.raft_port, node.http_port, node.internal_port


def _port_is_free(port: int) -> bool:
    """Whether a listener could bind the port now (SO_REUSEADDR, as the broker's sockets, ignores TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOCAL_HOST, port))
        except OSError:
            return False
    return True


def wait_until_ready(layout: ClusterLayout, processes: dict[int, subprocess.Popen], timeout_seconds: float,
                     serving_clients: bool = True) -> None:
    """Poll until every node serves clients (or, without ``serving_clients``, listens on its client port).

    ClusterError with the node's last log lines if one exits or time runs out.
    """
    def ready(node_id: int) -> bool:
        if serving_clients:
            return node_answers(node_address(layout, node_id))
        return not _port_is_free(layout.node(node_id).port)

    deadline = time.monotonic() + timeout_seconds
    waiting = sorted(processes)
    for _ in range(math.ceil(timeout_seconds / POLL_INTERVAL_SECONDS) + 1):
        answered = {node_id for node_id, is_ready in zip(waiting, _in_parallel(ready, waiting)) if is_ready}
        for node_id in waiting:  # after probing, so that an answer counts only from a node still running
            _raise_if_exited(layout, node_id, processes[node_id])
        waiting = [node_id for node_id in waiting if node_id not in answered]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_SECONDS)
    if waiting:
        tails = "\n".join(_log_tail_section(layout, node_id) for node_id in waiting)
        node_list = ", ".join(map(str, waiting))
        raise ClusterError(f"node(s) {node_list} did not answer within {timeout_seconds:g} s\n{tails}")


def _raise_if_exited(layout: ClusterLayout, node_id: int, process: subprocess.Popen) -> None:
    """ClusterError with the node's last log lines if its process has exited."""
    code = process.poll()
    if code is not None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise ClusterError(f"node {node_id} {how} during startup\n{_log_tail_section(layout, node_id)}")


def _log_tail_section(layout: ClusterLayout, node_id: int) -> str:
    """The last lines of a node's latest start in its log, headed by the log's path."""
    lines = _log_tail(layout.log_file(node_id))
    body = "\n".join(f"  | {line}" for line in lines) if lines else "  | (empty)"
    return f"last lines of {layout.log_file(node_id)}:\n{body}"


def _log_tail(path: Path, line_count: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines a node wrote since its latest start marker (reads at most the file's last 64 KiB)."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith(START_MARKER)]
    since_start = lines[starts[-1] + 1:] if starts else lines
    return since_start[-line_count:]


def signal_node(layout: ClusterLayout, node_id: int, signal_number: int) -> ProcessState:
    """Send a signal to a running node; after TERM or KILL wait (bounded) for it to exit. Returns its state."""
    layout.check_node_id(node_id)
    pid, state = node_state(layout, node_id)
    if pid is None or not state.alive:
        raise ClusterError(f"node {node_id} is not running")
    _send(pid, signal_number)
    if signal_number not in (signal.SIGTERM, signal.SIGKILL):
        return node_state(layout, node_id)[1]
    timeout_seconds = STOP_TIMEOUT_SECONDS if signal_number == signal.SIGTERM else KILL_TIMEOUT_SECONDS
    return _wait_for_exit(layout, [node_id], timeout_seconds).get(node_id, ProcessState.GONE)


def stop_nodes(layout: ClusterLayout, node_ids: list[int]) -> dict[int, str]:
    """SIGTERM the running nodes, SIGKILL those alive after a timeout, remove pid files; says what happened to each."""
    outcomes = {node_id: "was not running" for node_id in node_ids}
    running_pids = {}
    for node_id in node_ids:
        pid, state = node_state(layout, node_id)
        if pid is not None and state.alive:
            running_pids[node_id] = pid
            _send(pid, signal.SIGTERM)
            _send(pid, signal.SIGCONT)  # a stopped (SIGSTOP) process acts on SIGTERM only once resumed
            outcomes[node_id] = "stopped"
    survivors = _wait_for_exit(layout, list(running_pids), STOP_TIMEOUT_SECONDS)
    for node_id in survivors:
        _send(running_pids[node_id], signal.SIGKILL)
        outcomes[node_id] = f"killed (still running {STOP_TIMEOUT_SECONDS:g} s after SIGTERM)"
    unkillable = _wait_for_exit(layout, list(survivors), KILL_TIMEOUT_SECONDS)
    if unkillable:
        raise ClusterError(f"node(s) {', '.join(map(str, unkillable))} still running after SIGKILL")
    for node_id in node_ids:
        layout.pid_file(node_id).unlink(missing_ok=True)
    return outcomes


def _send(pid: int, signal_number: int) -> None:
    """Signal a process, ignoring one that has just exited."""
    try:
        os.kill(pid, signal_number)
    except ProcessLookupError:
        pass


def _wait_for_exit(layout: ClusterLayout, node_ids: list[int], timeout_seconds: float) -> dict[int, ProcessState]:
    """Poll until these nodes' processes are gone or time runs out; returns those still alive and their state."""
    deadline = time.monotonic() + timeout_seconds
    alive: dict[int, ProcessState] = {}
    for _ in range(math.ceil(timeout_seconds / POLL_INTERVAL_SECONDS) + 1):
        alive = {node_id: state for node_id in node_ids if (state := node_state(layout, node_id)[1]).alive}
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_SECONDS)
    return alive
