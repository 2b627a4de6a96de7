"""End-to-end latency: one writer sending at a fixed rate without waiting, one reader in a second process.

Each value starts with its send time (workload.SEND_TIME); the reader, a
child process, subtracts it from its clock on receipt and sends the delays
back when the writer is done. The harness (``measure``) is the same for
Rill and its peers (peers.py): only the reader function and the write
callable differ.

Rill's reader is a consumer in a group (fetch_max_wait_ms 100, reading from
the latest offset); Rill's writer a Producer with linger_ms 0 and the acks
the row says.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Callable

from rill.client import Consumer, Producer

from workload import SEND_TIME, delay_ms, paced, percentiles, timed_value

READY_TIMEOUT_S = 60
QUIET_S = 1.0  # the reader stops this long after the writer is done and nothing more came
WARM_UP = b"warm-up"  # a value readers ignore: the writer's first record, sent before the clock


def measure(reader: Callable, reader_args: tuple, write: Callable[[], None], timeout_s: float = 180
            ) -> tuple[float, float, int]:
    """Start ``reader(*reader_args, ready, done, results)`` in a child process, run ``write()`` once it is
    ready, and return (p50 ms, p99 ms, records received)."""
    context = multiprocessing.get_context("spawn")
    ready, done, results = context.Event(), context.Event(), context.Queue()
    child = context.Process(target=reader, args=(*reader_args, ready, done, results))
    child.start()
    try:
        if not ready.wait(READY_TIMEOUT_S):
            raise RuntimeError("the latency reader did not start")
        write()
        done.set()
        delays = _delays(child, results, timeout_s)
    finally:
        done.set()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    p50, p99 = percentiles(delays)
    return p50, p99, len(delays)


def _delays(child, results, timeout_s: float) -> list[float]:
    """What the reader sent back; RuntimeError once it died without sending, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            if not child.is_alive():
                break
    raise RuntimeError(f"the latency reader sent no delays back (exit code {child.exitcode})")


def read_until_done(poll: Callable[[], list[bytes]], done, results, max_seconds: float = 300) -> None:
    """Reader loop: ``poll()`` values until the writer is done and QUIET_S passed without more; put the
    delays of the timed values on ``results``."""
    delays: list[float] = []
    quiet_since = None
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        values = poll()
        received_ns = time.time_ns()
        delays.extend(delay_ms(value, received_ns) for value in values if len(value) > SEND_TIME.size
                      and value != WARM_UP)
        if values or not done.is_set():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_S:
            break
    results.put(delays)


def rill_reader(bootstrap: str, topic: str, ready, done, results) -> None:
    """Child process: a group member reading ``topic`` from its latest offset."""
    with Consumer(bootstrap, group_id=f"latency-{topic}", topics=[topic], auto_offset_reset="latest",
                  fetch_max_wait_ms=100) as consumer:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout=0.1)
        for tp in consumer.assignment():
            consumer.position(tp)  # resolve "latest" now, before the writer starts
        ready.set()
        read_until_done(lambda: [record.value for record in consumer.poll(timeout=0.1)], done, results)


def rill_latency(bootstrap: str, topic: str, rate: int, seconds: float, value_bytes: int, acks: str,
                 compression: str) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, records) of Rill at ``rate`` records/s for ``seconds``: acks as given, linger_ms 0."""
    padding = b" " * (value_bytes - SEND_TIME.size)
    total = int(rate * seconds)

    def write() -> None:
        with Producer(bootstrap, acks=acks, linger_ms=0, compression=compression) as producer:
            producer.send(topic, WARM_UP).result(timeout=30)

            def send(count: int) -> None:
                for _ in range(count):
                    producer.send(topic, timed_value(padding))

            paced(send, total, rate)
            producer.flush()

    return measure(rill_reader, (bootstrap, topic), write)
