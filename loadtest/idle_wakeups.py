"""Where an idle cluster's CPU goes: per broker and thread, CPU seconds and wake-ups per second.

Starts a fresh 3-broker cluster (free loopback ports, a temporary folder),
creates ``--idle`` idle partitions with replication factor 3 (as
partition_scale.py does), lets it settle, then reads every broker thread's
CPU time and voluntary context switches (its wake-ups: each time it slept
and was woken, by a timer or a socket) from /proc over a window. An idle
broker has three busy threads: the asyncio loop (``loop``: timers, periodic
duties, heartbeats, follower fetches), pysyncobj's Raft thread (``raft``:
its heartbeats) and ZeroMQ's I/O thread (``zmq``). Linux only (/proc).
Brokers are stopped by pid. Run alone::

    .venv/bin/python loadtest/idle_wakeups.py --idle 10000
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
from rill.client import Admin
from rill.cluster import launcher
from rill.cluster.layout import ClusterLayout

from bench_clusters import running_cluster
from partition_scale import (  # the same cluster as partition_scale.py measures
    ADMIN_TIMEOUT_MS,
    HOT_TOPIC,
    NODES,
    REPLICATION_FACTOR,
    SETTLE_S,
    _check_open_files,
    _create_idle,
    _wait_for_full_isr,
)

WINDOW_S = 10.0


@dataclass(frozen=True)
class ThreadSample:
    """One thread's counters at one moment: its name, CPU seconds so far, wake-ups so far."""

    name: str
    cpu_s: float
    wakeups: int


def sample_threads(pid: int) -> dict[int, ThreadSample]:
    """Every thread of a process, by thread id (threads that end while read are left out)."""
    ticks = os.sysconf("SC_CLK_TCK")
    samples = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
            name = (task / "comm").read_text().strip()
        except FileNotFoundError:
            continue
        wakeups = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        samples[int(task.name)] = ThreadSample(name, (int(stat[11]) + int(stat[12])) / ticks, wakeups)
    return samples


def thread_kind(pid: int, tid: int, name: str) -> str:
    """``loop`` (the main thread, the asyncio loop), ``zmq`` (ZeroMQ's own threads) or ``raft`` (the rest:
    an idle broker's only other busy thread is pysyncobj's)."""
    if tid == pid:
        return "loop"
    return "zmq" if name.startswith("ZMQ") else "raft"


def usage(pid: int, before: dict[int, ThreadSample], after: dict[int, ThreadSample],
          seconds: float) -> dict[str, dict[str, float]]:
    """CPU seconds and wake-ups per second of each kind of thread between two samples of one process."""
    kinds: dict[str, dict[str, float]] = {}
    for tid, now in after.items():
        then = before.get(tid)
        if then is None:
            continue
        kind = kinds.setdefault(thread_kind(pid, tid, now.name), {"cpu_per_s": 0.0, "wakeups_per_s": 0.0})
        kind["cpu_per_s"] += (now.cpu_s - then.cpu_s) / seconds
        kind["wakeups_per_s"] += (now.wakeups - then.wakeups) / seconds
    return {kind: {name: round(value, 4 if name == "cpu_per_s" else 1) for name, value in values.items()}
            for kind, values in sorted(kinds.items())}


def measure(layout: ClusterLayout, window_s: float) -> list[dict]:
    """One row per broker: its node id, whether it is the controller, and its threads' usage over the window."""
    controllers = {status.report.controller_id for status in launcher.node_statuses(layout) if status.report}
    pids = {node_id: launcher.read_pid(layout, node_id) for node_id in layout.node_ids}
    before = {node_id: sample_threads(pid) for node_id, pid in pids.items()}
    started = time.monotonic()
    time.sleep(window_s)
    after = {node_id: sample_threads(pid) for node_id, pid in pids.items()}
    seconds = time.monotonic() - started
    return [{"node": node_id, "controller": node_id in controllers,
             "threads": usage(pid, before[node_id], after[node_id], seconds)} for node_id, pid in pids.items()]


@click.command()
@click.option("--idle", "idle", default=0, show_default=True, help="Idle partitions (replication factor 3).")
@click.option("--window", "window_s", default=WINDOW_S, show_default=True, help="Seconds measured.")
def main(idle: int, window_s: float) -> None:
    """Print one JSON line per broker, then the cluster's total CPU per second."""
    _check_open_files(idle + 1)
    with tempfile.TemporaryDirectory(prefix="rill-idle-wakeups-") as folder:
        with running_cluster(Path(folder), NODES) as layout:
            with Admin(layout.bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS) as admin:
                _create_idle(admin, idle)
                admin.create_topic(HOT_TOPIC, 1, REPLICATION_FACTOR)
            _wait_for_full_isr(layout, idle + 1)
            time.sleep(SETTLE_S)
            rows = measure(layout, window_s)
    for row in rows:
        print(json.dumps(row), flush=True)
    total = sum(kind["cpu_per_s"] for row in rows for kind in row["threads"].values())
    print(json.dumps({"idle_partitions": idle, "idle_cpu_per_s": round(total, 3)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
