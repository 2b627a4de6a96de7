"""While a partition's older batches cannot be sent (in-flight requests at their limit), its open batch
stays open past linger_ms and later records join it, as Kafka's batch does until the sender drains it:
one batch of many records goes next, not a queue of single-record batches."""

from __future__ import annotations

import time

from rill.client.accumulator import RecordAccumulator

TOPIC = "orders"


def _accumulator() -> RecordAccumulator:
    return RecordAccumulator(batch_size=1 << 16, linger_ms=0, buffer_memory=1 << 22, max_block_ms=1000,
                             delivery_timeout_ms=60_000, wake_sender=lambda: None,
                             on_batch_closed=lambda topic, partition: None)


def _send(accumulator: RecordAccumulator, partition: int, count: int) -> None:
    for number in range(count):
        value = b"order-%d" % number
        accumulator.append(TOPIC, partition, 0, None, value, None, len(value))


def test_a_blocked_partitions_records_join_one_open_batch():
    accumulator = _accumulator()
    past_linger = time.monotonic() + 1
    _send(accumulator, 0, 1)
    ready, _ = accumulator.drain(past_linger, False, blocked={(TOPIC, 0)})
    assert ready == [], "a blocked partition's open batch is not closed at its linger"
    _send(accumulator, 0, 99)
    ready, _ = accumulator.drain(past_linger, False, blocked={(TOPIC, 0)})
    assert ready == []
    ready, _ = accumulator.drain(past_linger, False)  # unblocked: the sender can send it now
    assert [batch.record_count for batch in ready] == [100]


def test_other_partitions_drain_at_their_linger_meanwhile():
    accumulator = _accumulator()
    past_linger = time.monotonic() + 1
    _send(accumulator, 0, 3)
    _send(accumulator, 1, 2)
    ready, _ = accumulator.drain(past_linger, False, blocked={(TOPIC, 0)})
    assert [(batch.partition, batch.record_count) for batch in ready] == [(1, 2)]


def test_a_flush_closes_a_blocked_partitions_batch_too():
    accumulator = _accumulator()
    _send(accumulator, 0, 5)
    ready, _ = accumulator.drain(time.monotonic(), True, blocked={(TOPIC, 0)})
    assert [batch.record_count for batch in ready] == [5]
