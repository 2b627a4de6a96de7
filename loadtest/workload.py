"""What every benchmark sends, for Rill and its peers alike: the values, the pre-built batches, the pacing.

The same 100-byte JSON order events go to Rill, to the null broker, to the
raw client and to Redis and NATS, so that the ratios compare like with like.
Latency values start with their send time (``SEND_TIME``, ns since the
epoch), which the consumer subtracts from its clock on receipt.
"""

from __future__ import annotations

import os
import platform
import random
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rill.client.batch import COMPRESSION_CODECS, encode_batch

SEND_TIME = struct.Struct(">q")
VALUE_COUNT = 1_000  # distinct values, cycled


@dataclass(frozen=True)
class Settings:
    """The knobs of one bench run (bench.py's options)."""

    records: int
    value_bytes: int
    peer_records: int
    batch_size: int
    linger_ms: int
    compression: str
    latency_rates: tuple[int, ...]
    latency_seconds: float
    failover_rounds: int
    group_rate: int
    idempotence_rounds: int
    rounds: int = 1  # throughput runs of each kind, interleaved with their ceilings; the best counts

    @property
    def records_per_batch(self) -> int:
        """Records a Producer puts in one batch_size batch (value plus its length and timestamp columns)."""
        return max(1, self.batch_size // (self.value_bytes + 12))


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


def make_batches(settings: Settings, count: int = 4) -> list[bytes]:
    """``count`` record batches as a Producer would build them from the bench values, built once
    (timestamps now, so that retention keeps them)."""
    values = make_values(VALUE_COUNT, settings.value_bytes)
    per_batch = settings.records_per_batch
    now_ms = time.time_ns() // 1_000_000
    return [encode_batch([values[(start + i) % len(values)] for i in range(per_batch)],
                         timestamps=[now_ms] * per_batch, compression=COMPRESSION_CODECS[settings.compression])
            for start in range(0, count * per_batch, per_batch)]


def timed_value(padding: bytes) -> bytes:
    """A latency value: the send time, then ``padding``."""
    return SEND_TIME.pack(time.time_ns()) + padding


def delay_ms(value: bytes, received_ns: int) -> float:
    """End-to-end delay of a latency value received at ``received_ns``."""
    return (received_ns - SEND_TIME.unpack_from(value)[0]) / 1e6


def paced(send: Callable[[int], None], total: int, rate: int, step_s: float = 0.001) -> None:
    """Call ``send(n)`` to send n more records so that ``total`` go out at ``rate`` per second, in
    ``step_s`` steps; a late step catches up, so the mean rate holds."""
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        if due > sent:
            send(due - sent)
            sent = due
        time.sleep(step_s)


def percentiles(delays: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``delays``; raises when there are none."""
    if not delays:
        raise RuntimeError("no record arrived")
    ordered = sorted(delays)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


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
