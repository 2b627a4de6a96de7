"""Rill benchmark: produce throughput, consume throughput and end-to-end latency.

Starts its own broker process(es) on free loopback ports in a temporary
folder, runs three measurements, prints every parameter with the results,
and stops the brokers by pid. Run with ``make bench`` (or
``.venv/bin/python loadtest/bench.py --help`` for the knobs).

- produce: this process sends ``--records`` values as fast as ``send`` takes
  them, then flushes; records/s counts from the first send to the last ack.
- consume: a fresh consumer reads those records back from offset 0.
- latency: a consumer in a second process while this one sends at
  ``--latency-rate`` records/s; each value starts with its send time, so the
  consumer computes the end-to-end delay of every record it receives.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import random
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from rill.client import Admin, Consumer, Producer
from rill.cluster import launcher
from rill.cluster.layout import ClusterLayout, free_base_port

SEND_TIME = struct.Struct(">q")


@dataclass(frozen=True)
class Settings:
    records: int
    value_bytes: int
    partitions: int
    acks: str
    batch_size: int
    linger_ms: int
    compression: str
    latency_rate: int
    latency_seconds: float


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


def bench_produce(bootstrap: str, topic: str, settings: Settings) -> float:
    values = make_values(1_000, settings.value_bytes)
    with Producer(bootstrap, acks=settings.acks, batch_size=settings.batch_size, linger_ms=settings.linger_ms,
                  compression=settings.compression) as producer:
        producer.send(topic, values[0]).result(timeout=30)  # metadata and connection before the clock
        started = time.perf_counter()
        for number in range(settings.records):
            producer.send(topic, values[number % 1_000])
        producer.flush()
        elapsed = time.perf_counter() - started
    return settings.records / elapsed


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
        with Producer(bootstrap, acks=settings.acks, linger_ms=0, compression=settings.compression) as producer:
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


def report(settings: Settings, produce: float, consume: float, latency: tuple[float, float, int]) -> None:
    console = Console(width=120)
    megabytes = settings.value_bytes / 1e6
    console.print(f"machine: {machine()}; 1 broker on loopback")
    console.print(f"parameters: {settings.value_bytes} B values (JSON order events), acks={settings.acks}, "
                  f"batch_size={settings.batch_size}, linger_ms={settings.linger_ms}, "
                  f"compression={settings.compression}, partitions={settings.partitions}")
    table = Table(title="Rill benchmark")
    for column in ("measurement", "records", "how", "result"):
        table.add_column(column)
    table.add_row("produce", f"{settings.records:,}", "one producer, send() in a loop, then flush()",
                  f"{produce:,.0f} records/s ({produce * megabytes:,.1f} MB/s)")
    table.add_row("consume", f"{settings.records:,}", "one consumer from offset 0, max_poll_records=10000",
                  f"{consume:,.0f} records/s ({consume * megabytes:,.1f} MB/s)")
    p50, p99, count = latency
    table.add_row("end-to-end latency", f"{count:,}",
                  f"{settings.latency_rate:,} records/s for {settings.latency_seconds:g} s, linger_ms=0, "
                  "consumer in another process", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    console.print(table)


@click.command()
@click.option("--records", default=1_000_000, show_default=True, help="Records for the throughput runs.")
@click.option("--value-bytes", default=100, show_default=True)
@click.option("--partitions", default=1, show_default=True)
@click.option("--acks", default="1", show_default=True, type=click.Choice(["0", "1", "all"]))
@click.option("--batch-size", default=65536, show_default=True)
@click.option("--linger-ms", default=5, show_default=True)
@click.option("--compression", default="lz4", show_default=True, type=click.Choice(["lz4", "none"]))
@click.option("--latency-rate", default=10_000, show_default=True, help="Records/s during the latency run.")
@click.option("--latency-seconds", default=10.0, show_default=True)
def main(**options) -> None:
    """Measure produce and consume throughput and end-to-end latency against a fresh local broker."""
    settings = Settings(**options)
    with tempfile.TemporaryDirectory(prefix="rill-bench-") as folder:
        layout = ClusterLayout(Path(folder), 1, free_base_port(1))
        launcher.start_nodes(layout, list(layout.node_ids))
        try:
            with Admin(layout.bootstrap) as admin:
                admin.create_topic("bench-throughput", partitions=settings.partitions)
                admin.create_topic("bench-latency", partitions=settings.partitions)
            produce = bench_produce(layout.bootstrap, "bench-throughput", settings)
            consume = bench_consume(layout.bootstrap, "bench-throughput", settings.records + 1)
            latency = bench_latency(layout.bootstrap, "bench-latency", settings)
        finally:
            launcher.stop_nodes(layout, list(layout.node_ids))
    report(settings, produce, consume, latency)


if __name__ == "__main__":
    sys.exit(main())
