"""kill -9 of a broker under acks="all" load: every acknowledged record survives the restart, in order."""

from __future__ import annotations

import signal
import threading

from brokers import wait_until
from rill.client import Admin, Consumer, Producer, TopicPartition

RECORDS_MAX = 200_000


def produce_until_stopped(bootstrap: str, topic: str, stop: threading.Event, acked: list[int], errors: list) -> None:
    """Send numbered records one after another; note which the broker acknowledged."""
    with Producer(bootstrap, acks="all", linger_ms=1, batch_size=4_096, request_timeout_ms=1_000,
                  delivery_timeout_ms=60_000, max_in_flight_requests_per_connection=1, retry_backoff_ms=50) as producer:
        for number in range(RECORDS_MAX):
            if stop.is_set():
                break
            future = producer.send(topic, b"%d" % number)
            future.add_done_callback(lambda f, n=number: acked.append(n) if f.exception() is None else errors.append(n))
            if number % 500 == 499:
                producer.flush(timeout=90)


def read_everything(bootstrap: str, topic: str) -> list:
    partition = TopicPartition(topic, 0)
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([partition])
        end = consumer.end_offsets([partition])[partition]
        records: list = []
        for _ in range(2_000):
            records += consumer.poll(0.2)
            if len(records) >= end:
                break
    return records


def test_acknowledged_records_survive_kill_9(broker):
    topic = "durable"
    with Admin(broker.bootstrap) as admin:
        admin.create_topic(topic, partitions=1, config={"segment.bytes": 200_000})
    stop = threading.Event()
    acked: list[int] = []
    failed: list[int] = []
    writer = threading.Thread(target=produce_until_stopped, args=(broker.bootstrap, topic, stop, acked, failed))
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 3_000, 60, "3,000 acknowledged records")
        broker.kill(signal.SIGKILL)
        acked_at_kill = len(acked)
        broker.start()
        wait_until(lambda: len(acked) >= acked_at_kill + 3_000, 90, "writes to succeed after the restart")
    finally:
        stop.set()
        writer.join(timeout=120)
    assert not writer.is_alive()

    records = read_everything(broker.bootstrap, topic)
    offsets = [record.offset for record in records]
    assert offsets == list(range(len(records))), "offsets are dense from 0: no gaps"
    numbers = [int(record.value) for record in records]
    assert set(acked) <= set(numbers), f"lost acknowledged records: {sorted(set(acked) - set(numbers))[:10]}"
    first_seen = {}
    for position, number in enumerate(numbers):
        first_seen.setdefault(number, position)
    acked_order = sorted(acked, key=first_seen.__getitem__)
    assert acked_order == sorted(acked), "acknowledged records are read back in the order they were sent"
