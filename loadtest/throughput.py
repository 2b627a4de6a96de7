"""Records/s of Rill's own Producer and Consumer, against whatever answers at ``bootstrap``.

Against a real cluster these are Rill's end-to-end numbers; against the null
broker (null_broker.py) the very same calls measure the client's ceiling,
so the ratio of the two is the share of the client's speed the broker lets
through.
"""

from __future__ import annotations

import time

from rill.client import Consumer, Producer

from workload import VALUE_COUNT, Settings, make_values

KEY_COUNT = 1_000  # distinct keys of the keyed produce run


def bench_produce(bootstrap: str, topic: str, settings: Settings, acks: str, records: int | None = None,
                  keyed: bool = False, idempotence: bool = True) -> float:
    """Records/s of one producer sending ``records`` (default settings.records) as fast as ``send`` takes
    them, then flushing: from the first send to the last ack. ``keyed``: KEY_COUNT distinct keys, cycled.
    Idempotence applies only with acks=all (the producer's rule)."""
    records = settings.records if records is None else records
    values = make_values(VALUE_COUNT, settings.value_bytes)
    keys = [b"customer-%04d" % number for number in range(KEY_COUNT)] if keyed else [None]
    with Producer(bootstrap, acks=acks, batch_size=settings.batch_size, linger_ms=settings.linger_ms,
                  compression=settings.compression, enable_idempotence=idempotence) as producer:
        producer.send(topic, values[0]).result(timeout=30)  # metadata and connection before the clock
        send = producer.send
        started = time.perf_counter()
        for number in range(records):
            send(topic, values[number % VALUE_COUNT], keys[number % len(keys)])
        producer.flush()
        elapsed = time.perf_counter() - started
    return records / elapsed


def bench_consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 300) -> float:
    """Records/s of a fresh consumer (no group) reading ``expected`` records from offset 0; the clock
    starts after its first poll returned records (metadata, offsets and the first fetch are behind it),
    whose records do not count."""
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", max_poll_records=10_000) as consumer:
        first = len(consumer.poll(timeout=10))
        received = first
        started = time.perf_counter()
        deadline = started + timeout_s
        while received < expected and time.perf_counter() < deadline:
            received += len(consumer.poll(timeout=1.0))
        elapsed = time.perf_counter() - started
    if received < expected:
        raise RuntimeError(f"the consumer read {received:,} of {expected:,} records of {topic} in {timeout_s} s")
    return (received - first) / elapsed
