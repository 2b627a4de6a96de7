"""Rill benchmark: throughput, end-to-end latency and failover time.

Starts its own clusters (one broker, then three) on free loopback ports in a
temporary folder, runs the measurements, prints every parameter with the
results, and stops the brokers by pid. Run with ``make bench`` (or
``.venv/bin/python loadtest/bench.py --help`` for the knobs).

- produce: this process sends ``--records`` values as fast as ``send`` takes
  them, then flushes; records/s counts from the first send to the last ack.
- idempotence: the produce run with acks=all, idempotence off and on
  (the default), interleaved ``--idempotence-rounds`` times on one broker;
  the best of each and their ratio (the cost of idempotence).
- consume: a fresh consumer reads those records back from offset 0.
- latency: a consumer in a second process while this one sends at
  ``--latency-rate`` records/s; each value starts with its send time, so the
  consumer computes the end-to-end delay of every record it receives.
- replicated produce: the produce run against 3 brokers, replication factor
  3, with acks=1 and with acks=all.
- failover: kill -9 of the partition leader while a producer sends an
  acks=all record every 5 ms; the time until the first record sent after the
  kill is acknowledged; median over ``--failover-rounds`` kills.
- consumer group: three member processes on 6 partitions, and the time
  rebalances take on a join and a crash (loadtest/group_bench.py).

After each run it asks every broker for its event-loop lag (NodeStatus: how
late the broker's asyncio loop ran what was due, p50/p99/max over the last
minute) and prints those in a second table: heartbeats (200 ms) and the
session timeout (3 s) share that loop with request handling.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import random
import signal
import statistics
import struct
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import click
from rich.console import Console
from rich.table import Table

from rill.client import Admin, Consumer, Producer
from rill.cluster import launcher
from rill.cluster.layout import ClusterLayout, free_base_port

from group_bench import SESSION_TIMEOUT_MS, bench_group

SEND_TIME = struct.Struct(">q")

LagRow = tuple[str, str, str, str, str]  # run, node, p50, p99, max (ms)


@dataclass(frozen=True)
class Settings:
    records: int
    value_bytes: int
    partitions: int
    batch_size: int
    linger_ms: int
    compression: str
    latency_rate: int
    latency_seconds: float
    failover_rounds: int
    group_rate: int
    idempotence_rounds: int


def make_values(count: int, size: int, seed: int = 7) -> list[bytes]:
    """Order-event-like values of exactly ``size`` bytes: JSON with random ids, as services send."""
    rng = random.Random(seed)
    values = []
    for _ in range(count):
        event = (b'{"type":"OrderCreated","order_id":%d,"customer":"c-%06d","amount_cents":%d,"sku":"%s"}'
                 % (rng.randrange(10**12), rng.randrange(10**6), rng.randrange(10**6),
                    "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=10)).encode()))
        values.append(event.ljust(size, b" ")[:size])
    return values


def bench_produce(bootstrap: str, topic: str, settings: Settings, acks: str, idempotence: bool = True) -> float:
    """Records/s of one producer; idempotence applies only with acks=all (the producer's rule)."""
    values = make_values(1_000, settings.value_bytes)
    with Producer(bootstrap, acks=acks, batch_size=settings.batch_size, linger_ms=settings.linger_ms,
                  compression=settings.compression, enable_idempotence=idempotence) as producer:
        producer.send(topic, values[0]).result(timeout=30)  # metadata and connection before the clock
        started = time.perf_counter()
        for number in range(settings.records):
            producer.send(topic, values[number % 1_000])
        producer.flush()
        elapsed = time.perf_counter() - started
    return settings.records / elapsed


def bench_idempotence(bootstrap: str, topic: str, settings: Settings, rounds: int) -> tuple[float, float]:
    """Best records/s with idempotence off and on (acks=all), runs interleaved so that both see the same
    machine: (off, on)."""
    off, on = [], []
    for _ in range(rounds):
        off.append(bench_produce(bootstrap, topic, settings, "all", idempotence=False))
        on.append(bench_produce(bootstrap, topic, settings, "all", idempotence=True))
    return max(off), max(on)


def bench_consume(bootstrap: str, topic: str, expected: int) -> float:
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", max_poll_records=10_000) as consumer:
        received = len(consumer.poll(timeout=10))
        started = time.perf_counter()
        deadline = started + 300
        while received < expected and time.perf_counter() < deadline:
            received += len(consumer.poll(timeout=1.0))
        elapsed = time.perf_counter() - started
    return received / elapsed


def latency_consumer(bootstrap: str, topic: str, expected: int, ready, results) -> None:
    """Child process: read ``expected`` records and send back their delays in ms."""
    delays = []
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="latest", fetch_max_wait_ms=100) as consumer:
        consumer.poll(timeout=0.1)
        ready.set()
        deadline = time.monotonic() + 120
        while len(delays) < expected and time.monotonic() < deadline:
            for record in consumer.poll(timeout=0.5):
                now_ns = time.time_ns()
                delays.append((now_ns - SEND_TIME.unpack_from(record.value)[0]) / 1e6)
    results.put(delays)


def bench_latency(bootstrap: str, topic: str, settings: Settings) -> tuple[float, float, int]:
    total = int(settings.latency_rate * settings.latency_seconds)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    child = context.Process(target=latency_consumer, args=(bootstrap, topic, total, ready, results))
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the latency consumer did not start")
        padding = b" " * (settings.value_bytes - SEND_TIME.size)
        with Producer(bootstrap, acks=1, linger_ms=0, compression=settings.compression) as producer:
            producer.send(topic, SEND_TIME.pack(time.time_ns()) + padding).result(timeout=30)
            _paced_send(producer, topic, padding, total, settings.latency_rate)
            producer.flush()
        delays = sorted(results.get(timeout=180))
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    delays = delays[1:]  # the warm-up record
    if not delays:
        raise RuntimeError("the latency consumer received nothing")
    return delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))], len(delays)


def _paced_send(producer: Producer, topic: str, padding: bytes, total: int, rate: int) -> None:
    """Send ``total`` records at ``rate`` per second, in 1 ms steps."""
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        for _ in range(due - sent):
            producer.send(topic, SEND_TIME.pack(time.time_ns()) + padding)
        sent = due
        time.sleep(0.001)


def bench_failover(layout: ClusterLayout, rounds: int) -> list[float]:
    """Seconds from kill -9 of the partition leader to the first acks=all write sent after the kill."""
    topic = "bench-failover"
    with Admin(layout.bootstrap) as admin:
        admin.create_topic(topic, partitions=1, replication_factor=3, config={"min.insync.replicas": 2})
        times = []
        with Producer(layout.bootstrap, acks="all", linger_ms=0, request_timeout_ms=2_000,
                      retry_backoff_ms=20) as producer:
            for _ in range(rounds):
                _wait_for_full_isr(admin, topic)
                leader = admin.describe_topic(topic).partitions[0].leader
                killed_at = time.monotonic()
                launcher.signal_node(layout, leader, signal.SIGKILL)
                times.append(_first_ack_after(producer, topic, killed_at) - killed_at)
                launcher.start_nodes(layout, [leader])
    return times


def _wait_for_full_isr(admin: Admin, topic: str, timeout_s: float = 60) -> None:
    """Until the partition is back to three in-sync replicas led by its preferred leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        partition = admin.describe_topic(topic).partitions[0]
        if len(partition.isr) == 3 and partition.leader == partition.replicas[0]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{topic} did not get its three in-sync replicas back in {timeout_s} s")


def _first_ack_after(producer: Producer, topic: str, killed_at: float, timeout_s: float = 30) -> float:
    """Send a record every 5 ms from ``killed_at`` on; the time the first one is acknowledged."""
    acked: list[float] = []
    deadline = killed_at + timeout_s
    while not acked and time.monotonic() < deadline:
        future = producer.send(topic, b"failover probe")
        future.add_done_callback(lambda f: acked.append(time.monotonic()) if f.exception() is None else None)
        time.sleep(0.005)
    if not acked:
        raise RuntimeError(f"no write succeeded within {timeout_s} s of the kill")
    return min(acked)


@contextmanager
def running_cluster(folder: Path, node_count: int) -> Iterator[ClusterLayout]:
    """A fresh local cluster on free ports, stopped by pid afterwards."""
    layout = ClusterLayout(folder, node_count, free_base_port(node_count))
    launcher.start_nodes(layout, list(layout.node_ids))
    try:
        yield layout
    finally:
        launcher.stop_nodes(layout, list(layout.node_ids))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def note_loop_lag(layout: ClusterLayout, run: str, lags: list[LagRow]) -> None:
    """Add each broker's event-loop lag as it reports it now (over its last minute) to ``lags``."""
    for status in launcher.node_statuses(layout):
        report = status.report
        if report is None:
            lags.append((run, f"node {status.node_id}", "-", "-", "-"))
        else:
            lags.append((run, f"node {status.node_id}", f"{report.loop_lag_ms_p50:.1f}",
                         f"{report.loop_lag_ms_p99:.1f}", f"{report.loop_lag_ms_max:.1f}"))


def lag_table(lags: list[LagRow]) -> Table:
    table = Table(title="Broker event-loop lag, ms (over the minute before the end of each run)")
    for column in ("run", "node", "p50", "p99", "max"):
        table.add_column(column)
    for row in lags:
        table.add_row(*row)
    return table


def report(settings: Settings, rows: list[tuple[str, str, str, str]], lags: list[LagRow]) -> None:
    console = Console(width=140)
    console.print(f"machine: {machine()}; brokers on loopback")
    console.print(f"parameters: {settings.value_bytes} B values (JSON order events), batch_size={settings.batch_size}, "
                  f"linger_ms={settings.linger_ms}, compression={settings.compression}, "
                  f"partitions={settings.partitions}, one producer process")
    table = Table(title="Rill benchmark")
    for column in ("measurement", "records", "how", "result"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(lag_table(lags))


def single_broker_rows(layout: ClusterLayout, settings: Settings,
                       lags: list[LagRow]) -> list[tuple[str, str, str, str]]:
    megabytes = settings.value_bytes / 1e6
    with Admin(layout.bootstrap) as admin:
        admin.create_topic("bench-throughput", partitions=settings.partitions)
        admin.create_topic("bench-latency", partitions=settings.partitions)
    produce = bench_produce(layout.bootstrap, "bench-throughput", settings, "1")
    note_loop_lag(layout, "produce, 1 broker", lags)
    consume = bench_consume(layout.bootstrap, "bench-throughput", settings.records + 1)
    note_loop_lag(layout, "consume, 1 broker", lags)
    p50, p99, count = bench_latency(layout.bootstrap, "bench-latency", settings)
    note_loop_lag(layout, "end-to-end latency, 1 broker", lags)
    with Admin(layout.bootstrap) as admin:
        admin.create_topic("bench-idempotence", partitions=settings.partitions)
    plain, idempotent = bench_idempotence(layout.bootstrap, "bench-idempotence", settings, settings.idempotence_rounds)
    note_loop_lag(layout, "produce, idempotence off and on", lags)
    return [
        ("produce, 1 broker", f"{settings.records:,}", "acks=1, send() in a loop, then flush()",
         f"{produce:,.0f} records/s ({produce * megabytes:,.1f} MB/s)"),
        ("produce, idempotence off", f"{settings.records:,}",
         f"acks=all, enable_idempotence=False, best of {settings.idempotence_rounds}", f"{plain:,.0f} records/s"),
        ("produce, idempotence on", f"{settings.records:,}",
         f"acks=all, enable_idempotence=True (the default), best of {settings.idempotence_rounds}, interleaved",
         f"{idempotent:,.0f} records/s: {idempotent / plain:.1%} of off (cost {1 - idempotent / plain:+.1%})"),
        ("consume, 1 broker", f"{settings.records:,}", "from offset 0, max_poll_records=10000",
         f"{consume:,.0f} records/s ({consume * megabytes:,.1f} MB/s)"),
        ("end-to-end latency, 1 broker", f"{count:,}",
         f"{settings.latency_rate:,} records/s for {settings.latency_seconds:g} s, acks=1, linger_ms=0, "
         "consumer in another process", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"),
    ]


def replicated_rows(layout: ClusterLayout, settings: Settings,
                    lags: list[LagRow]) -> list[tuple[str, str, str, str]]:
    megabytes = settings.value_bytes / 1e6
    rows = []
    with Admin(layout.bootstrap) as admin:
        for acks in ("1", "all"):
            topic = f"bench-replicated-acks-{acks}"
            admin.create_topic(topic, partitions=settings.partitions, replication_factor=3,
                               config={"min.insync.replicas": 2})
            rate = bench_produce(layout.bootstrap, topic, settings, acks)
            note_loop_lag(layout, f"produce, 3 brokers, acks={acks}", lags)
            idempotence = ", idempotent" if acks == "all" else ""
            rows.append(("produce, 3 brokers, RF=3", f"{settings.records:,}",
                         f"acks={acks}{idempotence}, min.insync.replicas=2",
                         f"{rate:,.0f} records/s ({rate * megabytes:,.1f} MB/s)"))
    if settings.failover_rounds:
        times = sorted(bench_failover(layout, settings.failover_rounds))
        note_loop_lag(layout, "failover (the killed broker restarted: its lag is since then)", lags)
        rows.append(("failover, 3 brokers, RF=3", f"{len(times)} kills",
                     "kill -9 of the leader -> first acks=all write sent after it is acknowledged",
                     f"median {statistics.median(times):.2f} s (each: {', '.join(f'{t:.2f}' for t in times)})"))
    return rows + group_rows(layout, settings, lags)


def group_rows(layout: ClusterLayout, settings: Settings, lags: list[LagRow]) -> list[tuple[str, str, str, str]]:
    group = bench_group(layout.bootstrap, settings.records, make_values(1_000, settings.value_bytes),
                        settings.group_rate)
    note_loop_lag(layout, "consumer group of 3", lags)
    megabytes = settings.value_bytes / 1e6
    return [
        ("consumer group of 3, 3 brokers", f"{settings.records:,}", "3 member processes, 6 partitions, RF=3",
         f"{group.records_per_s:,.0f} records/s ({group.records_per_s * megabytes:,.1f} MB/s) aggregate"),
        ("join rebalance", "2 -> 3 members", f"stream of {settings.group_rate:,} records/s",
         f"newcomer owns its share after {group.join_s:.2f} s; old members' longest pause "
         f"{group.join_pause_ms:.0f} ms (before the join: {group.steady_gap_ms:.0f} ms)"),
        ("crash rebalance", "kill -9 of 1 of 3", f"session timeout {SESSION_TIMEOUT_MS / 1000:g} s",
         f"survivors own every partition {group.crash_s:.2f} s after the kill"),
    ]


@click.command()
@click.option("--records", default=1_000_000, show_default=True, help="Records for the throughput runs.")
@click.option("--value-bytes", default=100, show_default=True)
@click.option("--partitions", default=1, show_default=True)
@click.option("--batch-size", default=65536, show_default=True)
@click.option("--linger-ms", default=5, show_default=True)
@click.option("--compression", default="lz4", show_default=True, type=click.Choice(["lz4", "none"]))
@click.option("--latency-rate", default=10_000, show_default=True, help="Records/s during the latency run.")
@click.option("--latency-seconds", default=10.0, show_default=True)
@click.option("--failover-rounds", default=5, show_default=True, help="Leader kills to time (0: none).")
@click.option("--group-rate", default=20_000, show_default=True, help="Records/s during the rebalance runs.")
@click.option("--idempotence-rounds", default=3, show_default=True,
              help="Interleaved produce runs with idempotence off and on (acks=all, 1 broker).")
@click.option("--replicated/--single-only", default=True, show_default=True, help="Also run the 3-broker runs.")
def main(replicated: bool, **options) -> None:
    """Measure throughput, latency and failover against fresh local clusters (1 broker, then 3)."""
    settings = Settings(**options)
    lags: list[LagRow] = []
    with tempfile.TemporaryDirectory(prefix="rill-bench-") as folder:
        with running_cluster(Path(folder) / "single", 1) as layout:
            rows = single_broker_rows(layout, settings, lags)
        if replicated:
            with running_cluster(Path(folder) / "replicated", 3) as layout:
                rows += replicated_rows(layout, settings, lags)
    report(settings, rows, lags)


if __name__ == "__main__":
    sys.exit(main())
