"""acks=0 keeps the producer's memory bounded while the broker reads nothing (SIGSTOP), then delivers.

With acks=0 a batch counts against buffer_memory until ZeroMQ has handed its bytes to the
connection, not merely until it was queued in ZeroMQ. So with the broker stopped, ``send`` takes
about buffer_memory plus what the kernel's socket buffers hold, then blocks for max_block_ms and
raises RequestTimeoutError, as Kafka's producer does; it does not queue without limit in ZeroMQ
(whose queue alone holds 10,000 requests). Once the broker runs again, every record taken is stored.
"""

from __future__ import annotations

import signal

import pytest
from rill.client import Admin, Consumer, Producer, TopicPartition
from rill.client.errors import RequestTimeoutError

BUFFER_MEMORY = 4 << 20
VALUE = b"v" * (16 << 10)
FLOOD_CAP_BYTES = 256 << 20  # far above the bound; before the fix acks=0 took all of it without blocking
TAKEN_MAX_BYTES = 64 << 20  # buffer_memory + loopback socket buffers, with room to spare


@pytest.fixture
def topic(broker) -> str:
    with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic("acks0", partitions=1)
    return "acks0"


def flood(producer: Producer, topic: str) -> int:
    """Send until ``send`` blocks past max_block_ms (RequestTimeoutError); returns how many it took."""
    for taken in range(FLOOD_CAP_BYTES // len(VALUE)):
        try:
            producer.send(topic, VALUE)
        except RequestTimeoutError:
            return taken
    return FLOOD_CAP_BYTES // len(VALUE)


def stored_count(bootstrap: str, topic: str) -> int:
    with Consumer(bootstrap) as consumer:
        return consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]


def test_acks0_memory_is_bounded_while_the_broker_is_stopped(broker, topic):
    with Producer(broker.bootstrap, acks=0, linger_ms=0, compression="none", buffer_memory=BUFFER_MEMORY,
                  max_block_ms=500, request_timeout_ms=60_000, delivery_timeout_ms=120_000) as producer:
        producer.send(topic, b"warm-up")
        producer.flush(timeout=30)  # connected, metadata known
        broker.send_signal(signal.SIGSTOP)
        try:
            taken = flood(producer, topic)
        finally:
            broker.send_signal(signal.SIGCONT)
        assert 0 < taken * len(VALUE) < TAKEN_MAX_BYTES
        assert producer._accumulator._buffered_bytes <= BUFFER_MEMORY + len(VALUE) + 64
        producer.flush(timeout=60)
        producer.send(topic, b"after").result(timeout=30)
    assert stored_count(broker.bootstrap, topic) == taken + 2
