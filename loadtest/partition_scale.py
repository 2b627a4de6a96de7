"""How a broker's cost grows with idle partitions: one hot partition beside N idle ones.

For each N this starts a fresh 3-broker cluster (its own subfolder, free
loopback ports), creates N idle partitions with replication factor 3 (in
topics of IDLE_TOPIC_PARTITIONS partitions) and a hot 1-partition topic, and
measures:

- ``create_s``: the time to create the idle topics (``create_s_per_1000`` too);
- ``hot_records_per_s``: an acks=all producer into the hot partition, the best
  of HOT_ROUNDS runs (a run of 200,000 records lasts about half a second, so
  one that meets a retention pass or a Raft heartbeat burst says little);
- ``idle_cpu_per_s``: the CPU seconds the three broker processes used
  together per second of wall time over an idle window (per-process CPU
  time, from /proc/<pid>/stat, so other load on the machine does not count);
- ``restart_to_full_isr_s``: all three brokers stopped cleanly and started
  again; the time from the start until every partition's ISR has 3 members.
  ``restart_after_clean_stop`` says whether every broker finished its
  shutdown (flushed its logs and wrote its clean-shutdown marker) before the
  launcher's deadline: if one was killed, its logs were recovered at start.

Brokers are stopped by pid. Run alone::

    .venv/bin/python loadtest/partition_scale.py --idle 0,1000,3000,10000
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import click
import zmq
from rill.client import Admin, Producer, protocol
from rill.client.errors import RillError
from rill.client.network import NetworkClient
from rill.cluster import launcher
from rill.cluster.layout import ClusterError, ClusterLayout

from bench_clusters import running_cluster

NODES = 3
REPLICATION_FACTOR = 3
IDLE_TOPIC_PARTITIONS = 100
HOT_TOPIC = "hot"
IDLE_WINDOW_S = 5.0
HOT_ROUNDS = 3  # hot partition runs; the best counts, as in make bench's throughput rows
SETTLE_S = 2.0  # after the produce run, before the idle window: acks and ISR updates finish
FULL_ISR_TIMEOUT_S = 600.0
PORTS_FREE_TIMEOUT_S = 30.0  # another process may briefly hold a stopped broker's port
ADMIN_TIMEOUT_MS = 120_000
FILES_PER_LOG = 1  # a log's open files: its active segment's .log (indexes are opened to write)
FILES_BESIDES_LOGS = 2_000  # sockets, Raft journal, Python's own
METADATA_TIMEOUT_MS = 10_000


def _idle_topics(count: int) -> list[tuple[str, int]]:
    """(name, partitions) of the idle topics holding ``count`` partitions together."""
    topics = []
    number = 0
    while count > 0:
        size = min(count, IDLE_TOPIC_PARTITIONS)
        topics.append((f"idle-{number:04d}", size))
        count -= size
        number += 1
    return topics


def _create_idle(admin: Admin, count: int) -> float:
    """Create the idle topics; the seconds it took."""
    started = time.perf_counter()
    for name, partitions in _idle_topics(count):
        admin.create_topic(name, partitions, REPLICATION_FACTOR)
    return time.perf_counter() - started


def _produce(bootstrap: str, records: int, value_bytes: int) -> float:
    """Records/s of one acks=all producer into the hot partition, first send to last ack."""
    rng = random.Random(7)
    values = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz0123456789", k=value_bytes)) for _ in range(1_000)]
    with Producer(bootstrap, acks="all") as producer:
        producer.send(HOT_TOPIC, values[0]).result(timeout=60)  # metadata and connection before the clock
        started = time.perf_counter()
        for number in range(records):
            producer.send(HOT_TOPIC, values[number % 1_000])
        producer.flush()
        elapsed = time.perf_counter() - started
    return records / elapsed


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc; psutil elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        import psutil  # not a dependency: only where /proc is missing

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system


def _broker_pids(layout: ClusterLayout) -> list[int]:
    pids = [launcher.read_pid(layout, node_id) for node_id in layout.node_ids]
    return [pid for pid in pids if pid is not None]


def _idle_cpu(layout: ClusterLayout, window_s: float = IDLE_WINDOW_S) -> float:
    """CPU seconds per second the brokers use together while nobody sends or reads anything."""
    pids = _broker_pids(layout)
    before = sum(_cpu_seconds(pid) for pid in pids)
    started = time.monotonic()
    time.sleep(window_s)
    used = sum(_cpu_seconds(pid) for pid in pids) - before
    return used / (time.monotonic() - started)


def _partitions_short_of_full_isr(layout: ClusterLayout, expected: int) -> int | None:
    """How many partitions lack a full ISR, as a broker's metadata says (None: no broker answered)."""
    context = zmq.Context()
    network = NetworkClient(context, "partition-scale")
    try:
        for node_id in layout.node_ids:
            try:
                response = network.request(launcher.node_address(layout, node_id), protocol.METADATA,
                                           protocol.MetadataRequest(None), METADATA_TIMEOUT_MS)
            except RillError:
                continue
            partitions = [p for topic in response.topics for p in topic.partitions]
            if len(partitions) < expected:
                return expected
            return sum(1 for p in partitions if len(p.isr) < REPLICATION_FACTOR)
        return None
    finally:
        network.close()
        context.term()


def _wait_for_full_isr(layout: ClusterLayout, expected: int, timeout_s: float = FULL_ISR_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while _partitions_short_of_full_isr(layout, expected) != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the ISRs were not full {timeout_s:g} s after the restart")
        time.sleep(0.1)


def _restart_to_full_isr(layout: ClusterLayout, expected: int) -> tuple[float, bool]:
    """Stop all brokers cleanly, start them together; seconds from the start until every ISR is full, and
    whether every broker stopped by itself (none killed at the launcher's deadline)."""
    outcomes = launcher.stop_nodes(layout, list(layout.node_ids))
    deadline = time.monotonic() + PORTS_FREE_TIMEOUT_S
    while True:
        started = time.perf_counter()
        try:
            launcher.start_nodes(layout, list(layout.node_ids))
            break
        except ClusterError as error:  # a port still (or briefly) taken: refused before anything started
            if "in use" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    _wait_for_full_isr(layout, expected)
    return time.perf_counter() - started, all(outcome == "stopped" for outcome in outcomes.values())


def _check_open_files(partitions: int) -> None:
    """Every broker holds a log of every partition (replication factor 3 on 3 brokers), each with open
    files: raise the soft limit of open files (the brokers inherit it) as far as the hard one allows, or
    refuse a count that would end in "Too many open files" (raise ``ulimit -n`` for it)."""
    needed = partitions * FILES_PER_LOG + FILES_BESIDES_LOGS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise click.UsageError(f"{partitions} partitions need about {needed} open files per broker; the limit "
                               f"is {hard} (ulimit -Hn): raise it, or measure fewer partitions")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def bench_one(folder: Path, idle: int, records: int, value_bytes: int = 100) -> dict:
    """The measurements of one cluster with ``idle`` idle partitions (see the module docstring)."""
    _check_open_files(idle + 1)
    with running_cluster(folder, NODES) as layout:
        with Admin(layout.bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS) as admin:
            create_s = _create_idle(admin, idle)
            admin.create_topic(HOT_TOPIC, 1, REPLICATION_FACTOR)
        _wait_for_full_isr(layout, idle + 1)
        hot = max(_produce(layout.bootstrap, records, value_bytes) for _ in range(HOT_ROUNDS))
        time.sleep(SETTLE_S)
        idle_cpu = _idle_cpu(layout)
        restart, stopped_cleanly = _restart_to_full_isr(layout, idle + 1)
    return {
        "idle_partitions": idle,
        "create_s": round(create_s, 2),
        "create_s_per_1000": round(create_s / idle * 1000, 2) if idle else 0.0,
        "hot_records_per_s": round(hot),
        "idle_cpu_per_s": round(idle_cpu, 3),
        "restart_to_full_isr_s": round(restart, 2),
        "restart_after_clean_stop": stopped_cleanly,
    }


def bench_idle_partitions(folder: Path, idle_counts: list[int], records: int,
                          value_bytes: int = 100) -> list[dict]:
    """One row per idle partition count (smallest first), each from its own fresh cluster under ``folder``;
    rows add ``hot_vs_no_idle`` (throughput relative to the row with 0 idle partitions) when there is one."""
    return list(_rows(Path(folder), idle_counts, records, value_bytes))


def _rows(folder: Path, idle_counts: list[int], records: int, value_bytes: int) -> Iterator[dict]:
    """The rows one by one, as each cluster is measured; ``hot_vs_no_idle`` once the 0 row is known."""
    base = None
    for idle in sorted(idle_counts):
        row = bench_one(folder / f"idle-{idle}", idle, records, value_bytes)
        if idle == 0:
            base = row["hot_records_per_s"]
        if base:
            row["hot_vs_no_idle"] = round(row["hot_records_per_s"] / base, 2)
        yield row


@click.command()
@click.option("--idle", "idle", default="0,1000,3000", show_default=True,
              help="Comma-separated idle partition counts, one cluster each.")
@click.option("--records", default=200_000, show_default=True, help="Records the hot producer sends.")
@click.option("--value-bytes", default=100, show_default=True)
@click.option("--folder", type=click.Path(path_type=Path), default=None,
              help="Where the clusters live (a temporary folder, removed afterwards, by default).")
def main(idle: str, records: int, value_bytes: int, folder: Path | None) -> None:
    """Print one JSON line per idle partition count."""
    counts = [int(part) for part in idle.split(",") if part.strip()]
    with tempfile.TemporaryDirectory(prefix="rill-partition-scale-") as temporary:
        for row in _rows(folder or Path(temporary), counts, records, value_bytes):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
