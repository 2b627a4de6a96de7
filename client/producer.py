"""Producer: partitioned, batched, compressed publishing with a future per record.

``send`` picks the partition (keyed: Kafka's murmur2; unkeyed: sticky),
appends the record to its partition's open batch and returns at once; a
background sender thread ships batches (see client/sender.py). Thread-safe:
many threads may share one Producer.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Mapping

import zmq

from rill.client import batch as batch_format
from rill.client.accumulator import RecordAccumulator, RecordFuture
from rill.client.errors import (
    InvalidConfigError,
    ProducerClosedError,
    RecordTooLargeError,
    RequestTimeoutError,
    UnknownTopicError,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import parse_bootstrap
from rill.client.partitioner import StickyPartitioner, partition_for_key
from rill.client.sender import Sender, SenderConfig
from rill.client.zmq_flavor import new_context

ACKS = {0: 0, 1: 1, -1: -1, "all": -1, "0": 0, "1": 1, "-1": -1}
_instances = itertools.count()
_wall_clock_s = time.time


class Producer:
    """Publishes records to topics. Settings use Kafka's names and defaults in snake_case."""

    def __init__(
        self,
        bootstrap: str,
        *,
        acks: int | str = "all",
        linger_ms: int = 5,
        batch_size: int = 65536,
        compression: str = "lz4",
        max_request_size: int = 1048576,
        buffer_memory: int = 33554432,
        max_block_ms: int = 60000,
        delivery_timeout_ms: int = 120000,
        request_timeout_ms: int = 30000,
        retry_backoff_ms: int = 100,
        max_in_flight_requests_per_connection: int = 5,
        client_id: str = "rill-producer",
    ):
        if acks not in ACKS:
            raise InvalidConfigError(f"acks must be 0, 1, 'all' or -1, got {acks!r}")
        if compression not in batch_format.COMPRESSION_CODECS:
            raise InvalidConfigError(f"compression must be one of {sorted(batch_format.COMPRESSION_CODECS)}")
        for name, value in (("linger_ms", linger_ms), ("batch_size", batch_size), ("max_block_ms", max_block_ms),
                            ("max_request_size", max_request_size), ("buffer_memory", buffer_memory),
                            ("delivery_timeout_ms", delivery_timeout_ms), ("request_timeout_ms", request_timeout_ms),
                            ("retry_backoff_ms", retry_backoff_ms),
                            ("max_in_flight_requests_per_connection", max_in_flight_requests_per_connection)):
            if not isinstance(value, int) or value < (0 if name in ("linger_ms", "retry_backoff_ms") else 1):
                raise InvalidConfigError(f"{name} must be a positive integer, got {value!r}")
        self._max_request_size = max_request_size
        self._max_block_s = max_block_ms / 1000
        self._closed = False
        self._partitioner = StickyPartitioner()
        self._sticky = self._partitioner.current  # read without a call on the hot path
        self._context = new_context()
        wake_address = f"inproc://rill-producer-wake-{next(_instances)}"
        self._wake_lock = threading.Lock()
        self._accumulator = RecordAccumulator(batch_size, linger_ms, buffer_memory, max_block_ms,
                                              delivery_timeout_ms, self._wake_if_asleep, self._batch_closed)
        self._sender = Sender(
            SenderConfig(ACKS[acks], batch_format.COMPRESSION_CODECS[compression],
                         max_in_flight_requests_per_connection, max_request_size, request_timeout_ms,
                         retry_backoff_ms, client_id),
            self._accumulator, ClusterMetadata(parse_bootstrap(bootstrap)), self._context, wake_address,
        )
        self._sender.start()
        self._wake_socket = self._context.socket(zmq.PUSH)
        self._wake_socket.setsockopt(zmq.LINGER, 0)
        self._wake_socket.setsockopt(zmq.SNDHWM, 1)
        self._wake_socket.connect(wake_address)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: Mapping[str, bytes] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> RecordFuture:
        """Queue one record; the future gives its RecordMetadata once acknowledged."""
        if self._closed:
            raise ProducerClosedError("send() after close()")
        count = self._sender.partition_counts.get(topic)
        if count is None:
            count = self._wait_for_topic(topic)
        if partition is None:
            if key is not None:
                partition = partition_for_key(key, count)
            else:
                partition = self._sticky.get(topic)
                if partition is None or partition >= count:
                    partition = self._partitioner.partition(topic, count)
        elif not 0 <= partition < count:
            raise UnknownTopicError(f"topic {topic!r} has partitions 0..{count - 1}, not {partition}")
        size = (0 if value is None else len(value)) + (0 if key is None else len(key))
        if headers:
            size += sum(len(name) + len(header) for name, header in headers.items())
        if size + batch_format.HEADER_SIZE > self._max_request_size:
            raise RecordTooLargeError(f"a record of {size} bytes is over max_request_size={self._max_request_size}")
        if timestamp_ms is None:
            timestamp_ms = int(_wall_clock_s() * 1000)
        return self._accumulator.append(topic, partition, timestamp_ms, key, value, headers, size)

    def _wait_for_topic(self, topic: str) -> int:
        """Ask the sender for the topic's metadata and wait up to max_block_ms."""
        sender = self._sender
        deadline = time.monotonic() + self._max_block_s
        with sender.metadata_changed:
            sender.metadata.errors.pop(topic, None)
            sender.wanted_topics.add(topic)
            self._wake()
            while True:
                count = sender.partition_counts.get(topic)
                if count is not None:
                    return count
                if topic in sender.metadata.errors:
                    raise sender.metadata.errors[topic]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sender.is_alive():
                    raise RequestTimeoutError(f"no metadata for topic {topic!r} within max_block_ms")
                sender.metadata_changed.wait(min(remaining, 0.1))

    def _wake_if_asleep(self) -> None:
        """Wake the sender only if it waits in poll: a busy sender drains new batches on its own."""
        if self._sender.asleep:
            self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_socket.send(b"", zmq.NOBLOCK)
            except (zmq.Again, AttributeError):
                pass  # a wake-up is pending already, or the producer is still starting

    def _batch_closed(self, topic: str, partition: int) -> None:
        count = self._sender.partition_counts.get(topic)
        if count:
            self._partitioner.batch_closed(topic, partition, count)

    def flush(self, timeout: float | None = None) -> None:
        """Send every record queued so far and wait until each is acknowledged or failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._accumulator.flushing += 1
        try:
            self._wake()
            for batch in self._accumulator.unfinished():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not batch.result.wait(remaining):
                    raise RequestTimeoutError(f"flush did not complete within {timeout} s")
        finally:
            self._accumulator.flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (waiting up to ``timeout``), then stop; unsent records fail."""
        if self._closed:
            return
        self._closed = True
        self._sender.initiate_close(force=timeout == 0)
        self._wake()
        self._sender.join(timeout)
        if self._sender.is_alive():
            self._sender.initiate_close(force=True)
            self._wake()
            self._sender.join()
        with self._wake_lock:
            self._wake_socket.close(linger=0)
        self._context.term()
