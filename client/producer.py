"""Producer: partitioned, batched, compressed publishing with a future per record.

``send`` picks the partition (keyed: Kafka's murmur2; unkeyed: sticky),
appends the record to its partition's open batch and returns at once; a
background sender thread ships batches (see client/sender.py). Thread-safe:
many threads may share one Producer.

A wrong call fails at the call: settings with InvalidConfigError when the
Producer is built; ``send`` with TypeError (a str value, say) or ValueError
(a negative partition, a bad topic name) before anything is queued, so one
bad record cannot harm the records of other threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from functools import partial
from itertools import repeat
from typing import Any

import zmq
from rill.client import batch as batch_format
from rill.client.accumulator import ProducerBatch, RecordAccumulator, RecordFuture
from rill.client.arguments import (
    MAX_INT32,
    MAX_TIMESTAMP_MS,
    check_partition,
    check_timeout_s,
    check_timestamp_ms,
    check_topic,
    config_int,
    config_str,
    record_bytes,
    record_headers,
)
from rill.client.batch_future import BatchFuture
from rill.client.bulk_send import BulkRecords, bulk_records, group_by_partition, pick
from rill.client.errors import (
    InvalidConfigError,
    ProducerClosedError,
    RecordTooLargeError,
    RequestTimeoutError,
    SerializationError,
    UnknownTopicError,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import parse_bootstrap
from rill.client.partitioner import StickyPartitioner, partition_for_key
from rill.client.sender import Sender, SenderConfig
from rill.client.serialization import SerializerLike, check_serializer, serialize_field
from rill.client.zmq_flavor import new_context

ACKS = {0: 0, 1: 1, -1: -1, "all": -1, "0": 0, "1": 1, "-1": -1}
MINIMUMS = {  # of the integer settings; each is at most 2**31-1 (Kafka's int), buffer_memory at most 2**63-1
    "linger_ms": 0, "batch_size": 1, "max_request_size": batch_format.HEADER_SIZE + 1, "buffer_memory": 1,
    "max_block_ms": 0, "delivery_timeout_ms": 1, "request_timeout_ms": 1, "retry_backoff_ms": 0,
    "max_in_flight_requests_per_connection": 1, "retry_backoff_max_ms": 0,
}
MAX_IN_FLIGHT_IDEMPOTENT = 5  # the broker remembers the last 5 batches per producer and partition
_instances = itertools.count()
_wall_clock_s = time.time


class Producer:
    """Publishes records to topics. Settings use Kafka's names and defaults in snake_case.

    ``enable_idempotence`` (default True; in effect only with acks="all" and
    max_in_flight_requests_per_connection <= 5, as in Kafka): the producer gets a producer id from
    the controller and numbers its batches per partition, so a retried batch the leader stored
    already is not written twice, and each partition keeps its order with 5 requests in flight.
    Retriable errors are retried, the n-th time after min(retry_backoff_ms * 2**(n-1),
    retry_backoff_max_ms) with +-20% jitter, until ``delivery_timeout_ms`` after the batch's first
    record; then the record fails with the last error its batch got (RequestTimeoutError if none).
    """

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
        retry_backoff_max_ms: int = 1000,
        max_in_flight_requests_per_connection: int = 5,
        enable_idempotence: bool = True,
        key_serializer: SerializerLike | None = None,
        value_serializer: SerializerLike | None = None,
        client_id: str = "rill-producer",
    ):
        addresses = parse_bootstrap(bootstrap)
        _check_settings(acks, compression, client_id, linger_ms=linger_ms, batch_size=batch_size,
                        max_request_size=max_request_size, buffer_memory=buffer_memory, max_block_ms=max_block_ms,
                        delivery_timeout_ms=delivery_timeout_ms, request_timeout_ms=request_timeout_ms,
                        retry_backoff_ms=retry_backoff_ms, retry_backoff_max_ms=retry_backoff_max_ms,
                        max_in_flight_requests_per_connection=max_in_flight_requests_per_connection)
        check_serializer("key_serializer", key_serializer)
        check_serializer("value_serializer", value_serializer)
        if not isinstance(enable_idempotence, bool):
            raise InvalidConfigError(f"enable_idempotence must be True or False, got {enable_idempotence!r:.80}")
        # Kafka's rule: idempotence is on unless settings it cannot keep its promise with are chosen.
        idempotent = (enable_idempotence and ACKS[acks] == -1
                      and max_in_flight_requests_per_connection <= MAX_IN_FLIGHT_IDEMPOTENT)
        self._key_serializer = key_serializer
        self._value_serializer = value_serializer
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
                         retry_backoff_ms, client_id, retry_backoff_max_ms, idempotent),
            self._accumulator, ClusterMetadata(addresses), self._context, wake_address,
        )
        self._sender.start()
        self._wake_socket = self._context.socket(zmq.PUSH)
        self._wake_socket.setsockopt(zmq.LINGER, 0)
        self._wake_socket.setsockopt(zmq.SNDHWM, 1)
        self._wake_socket.connect(wake_address)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, topic: str, value: Any = None, key: Any = None,
             headers: Mapping[str, bytes] | list[tuple[str, bytes]] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> RecordFuture:
        """Queue one record; the future gives its RecordMetadata once acknowledged.

        ``value`` and ``key``: bytes, bytearray or memoryview (copied at the call) or None; with a
        ``value_serializer`` / ``key_serializer``, any object it takes (None stays None), serialized here,
        at the call: a failure raises SerializationError and nothing is queued. ``headers``: a dict or a
        list of (str, bytes) pairs. A wrong type raises TypeError and a bad value ValueError, at the call;
        a partition the topic does not have raises UnknownTopicError; a record over max_request_size
        RecordTooLargeError. Blocks up to max_block_ms for the topic's metadata and for buffer_memory
        (then RequestTimeoutError).
        """
        if self._closed:
            raise ProducerClosedError("send() after close()")
        if self._sender.fatal_error is not None:
            raise ProducerClosedError(str(self._sender.fatal_error))
        # Cheap exact-type tests first: the checks below cost a call only for unusual arguments.
        if topic.__class__ is not str:
            check_topic(topic)
        headers_size = 0
        if self._key_serializer is not None or self._value_serializer is not None:
            key, value, headers, headers_size = self._serialize(topic, key, value, headers)
        elif headers is not None:
            headers, headers_size = record_headers(headers)
        if value.__class__ is not bytes and value is not None:
            value = record_bytes("value", value)
        if key.__class__ is not bytes and key is not None:
            key = record_bytes("key", key)
        if partition is not None and (partition.__class__ is not int or partition < 0):
            check_partition(partition)
        if timestamp_ms is not None and (timestamp_ms.__class__ is not int
                                         or not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS):
            check_timestamp_ms(timestamp_ms)
        count = self._sender.partition_counts.get(topic)
        if count is None:
            check_topic(topic)
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
        size = (0 if value is None else len(value)) + (0 if key is None else len(key)) + headers_size
        if size + batch_format.HEADER_SIZE > self._max_request_size:
            raise RecordTooLargeError(f"a record of {size} bytes is over max_request_size={self._max_request_size}")
        if timestamp_ms is None:
            timestamp_ms = int(_wall_clock_s() * 1000)
        return self._accumulator.append(topic, partition, timestamp_ms, key, value, headers, size)

    def send_many(self, topic: str, values: Any, keys: Any = None, headers: Any = None,
                  partition: int | None = None) -> BatchFuture:
        """Queue many records at once; the BatchFuture gives their partitions and offsets, in input order,
        once all are acknowledged. The records go through the same batches as ``send``'s (batch_size,
        linger_ms, retries, idempotence, acks, buffer_memory, metrics, ``flush``), appended a batch-sized
        slice at a time instead of a call per record.

        ``values`` and ``keys`` (optional, one per value): lists or tuples of bytes or None, numpy arrays
        (dtype object, or 'S'), pyarrow binary or string arrays, or a poll_batch column (client/bulk_send.py).
        ``headers``: None, one dict (or list of pairs) for every record, or a list with one per record.
        With keys each record goes where ``send`` would put it (Kafka's murmur2; a None key to the sticky
        partition); with ``partition`` all go there; with neither they fill one partition's batch after
        another, as the sticky partitioner does. Every record of the call gets the call's timestamp.
        Serializers, if configured, run per record: raw bytes skip them and are the fast path.

        Everything is checked before anything is queued: TypeError for a wrong type (naming the item),
        ValueError for columns of different lengths or a bad header, UnknownTopicError, RecordTooLargeError,
        SerializationError. Blocks up to max_block_ms for the topic's metadata and for buffer_memory before
        each slice: if it stays full (or the producer closes) after some slices were queued, those are sent
        and the rest fail in the future with that error; if before any, it is raised.
        """
        if self._closed:
            raise ProducerClosedError("send_many() after close()")
        if self._sender.fatal_error is not None:
            raise ProducerClosedError(str(self._sender.fatal_error))
        check_topic(topic)
        if partition is not None:
            check_partition(partition)
        serialize = None
        if self._key_serializer is not None or self._value_serializer is not None:
            serialize = partial(self._serialize, topic)
        records = bulk_records(values, keys, headers, serialize)
        count = self._sender.partition_counts.get(topic)
        if count is None:
            count = self._wait_for_topic(topic)
        if partition is not None and not 0 <= partition < count:
            raise UnknownTopicError(f"topic {topic!r} has partitions 0..{count - 1}, not {partition}")
        if records.largest + batch_format.HEADER_SIZE > self._max_request_size:
            raise RecordTooLargeError(f"a record of {records.largest} bytes is over "
                                      f"max_request_size={self._max_request_size}")
        future = BatchFuture(topic, len(records.values), int(_wall_clock_s() * 1000))
        try:
            if partition is not None or count == 1:
                self._append_to(topic, partition or 0, records, future)
            elif records.keys is not None:
                self._append_keyed(topic, count, records, future)
            else:
                self._append_sticky(topic, count, records, future)
        except (RequestTimeoutError, ProducerClosedError) as error:
            if not future.queued_any():
                raise
            future.not_queued(error)
        future.start()
        return future

    def _append_to(self, topic: str, partition: int, records: BulkRecords, future: BatchFuture) -> None:
        self._accumulator.append_many(topic, partition, future.timestamp, records.keys, records.values,
                                      records.headers, records.sizes, 0, len(records.values), future.add_run,
                                      values_only=records.values_only)

    def _append_sticky(self, topic: str, count: int, records: BulkRecords, future: BatchFuture) -> None:
        """Unkeyed records: the sticky partition's open batch is filled, then the next partition's."""
        position, total = 0, len(records.values)
        while position < total:
            partition = self._sticky.get(topic)
            if partition is None or partition >= count:
                partition = self._partitioner.partition(topic, count)
            position = self._accumulator.append_many(topic, partition, future.timestamp, records.keys,
                                                     records.values, records.headers, records.sizes,
                                                     position, total, future.add_run, until_closed=True,
                                                     values_only=records.values_only)

    def _append_keyed(self, topic: str, count: int, records: BulkRecords, future: BatchFuture) -> None:
        """Keyed records: each partition's records (send's choice, key by key) appended as one column."""
        keys = records.keys
        if keys.count(None):
            sticky = self._partitioner.partition(topic, count)
            partitions = [sticky if key is None else partition_for_key(key, count) for key in keys]
        else:
            partitions = list(map(partition_for_key, keys, repeat(count)))
        for partition, indices in group_by_partition(partitions):
            def add(batch: ProducerBatch, index: int, start: int, added: int, indices: list[int] = indices) -> None:
                future.add(batch, index, added, indices[start:start + added])

            headers = pick(records.headers, indices) if isinstance(records.headers, list) else records.headers
            self._accumulator.append_many(topic, partition, future.timestamp, pick(keys, indices),
                                          pick(records.values, indices), headers, pick(records.sizes, indices), 0,
                                          len(indices), add)

    def _serialize(self, topic: str, key: Any, value: Any, headers: Mapping[str, bytes] | list | None
                   ) -> tuple[bytes | None, bytes | None, dict[str, bytes] | None, int]:
        """The key and value through their serializers (key first, as Kafka), and the headers with those a
        Serializer added to its copy of them, with their size. SerializationError for any failure of a
        serializer's; bad headers from the caller stay a TypeError or ValueError."""
        check_topic(topic)
        copied = record_headers(headers)[0] if headers is not None else None
        headers = {} if copied is None else copied
        if self._key_serializer is not None:
            key = serialize_field("key", self._key_serializer, topic, key, headers)
        if self._value_serializer is not None:
            value = serialize_field("value", self._value_serializer, topic, value, headers)
        if not headers:
            return key, value, None, 0
        try:
            headers, size = record_headers(headers)
        except (TypeError, ValueError) as error:
            raise SerializationError(f"a serializer added a bad header to a record for topic {topic!r}: "
                                     f"{error}") from error
        return key, value, headers, size

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
                if not sender.is_alive():
                    raise sender.fatal_error or ProducerClosedError("the producer is closed")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
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
        """Send every record queued so far and wait until each is acknowledged or failed, and its done
        callbacks have run.

        Raises RequestTimeoutError after ``timeout`` seconds, and ProducerClosedError at once if the
        producer's sender thread has stopped for good.
        """
        timeout = check_timeout_s("timeout", timeout)
        self._refuse_on_sender_thread("flush")
        if self._sender.fatal_error is not None:
            raise ProducerClosedError(str(self._sender.fatal_error))
        deadline = None if timeout is None else time.monotonic() + timeout
        self._accumulator.flushing += 1
        try:
            self._wake()
            for batch in self._accumulator.unfinished():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not batch.result.wait_settled(remaining):
                    raise RequestTimeoutError(f"flush did not complete within {timeout} s")
        finally:
            self._accumulator.flushing -= 1

    def metrics(self) -> dict[str, object]:
        """A snapshot of this producer's metrics: a flat dict of ints and floats (``record_errors_by_type``
        a dict of error class name to records), each key explained in client/producer_metrics.py's METRICS.

        Rates, averages and maximums are over the last 30 s; totals since the producer was built. Cheap
        and thread-safe; works after close too. For Prometheus, see ``rill.client.prometheus.register``.
        """
        return self._accumulator.metrics.snapshot(*self._accumulator.usage())

    @property
    def client_id(self) -> str:
        return self._sender.config.client_id

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (waiting up to ``timeout`` seconds), then stop; unsent records fail."""
        timeout = check_timeout_s("timeout", timeout)
        self._refuse_on_sender_thread("close")
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

    def _refuse_on_sender_thread(self, call: str) -> None:
        """Done callbacks run on the sender thread: a flush or close there would wait for that thread itself."""
        if threading.current_thread() is self._sender:
            raise RuntimeError(f"{call}() from a done callback would wait for itself: callbacks run on the "
                               "producer's sender thread")


def _check_settings(acks: object, compression: object, client_id: object, **numbers: object) -> None:
    """InvalidConfigError for any setting of the wrong type or out of range, before anything starts."""
    if isinstance(acks, bool) or not isinstance(acks, (int, str)) or acks not in ACKS:
        raise InvalidConfigError(f"acks must be 0, 1, 'all' or -1, got {acks!r:.80}")
    if not isinstance(compression, str) or compression not in batch_format.COMPRESSION_CODECS:
        raise InvalidConfigError(f"compression must be one of {sorted(batch_format.COMPRESSION_CODECS)}, "
                                 f"got {compression!r:.80}")
    config_str("client_id", client_id)
    for name, value in numbers.items():
        config_int(name, value, MINIMUMS[name], MAX_TIMESTAMP_MS if name == "buffer_memory" else MAX_INT32)
    if numbers["retry_backoff_max_ms"] < numbers["retry_backoff_ms"]:
        raise InvalidConfigError(f"retry_backoff_max_ms ({numbers['retry_backoff_max_ms']}) must be at least "
                                 f"retry_backoff_ms ({numbers['retry_backoff_ms']})")
    linger_ms, request_timeout_ms, delivery_timeout_ms = (
        numbers["linger_ms"], numbers["request_timeout_ms"], numbers["delivery_timeout_ms"])
    if delivery_timeout_ms < linger_ms + request_timeout_ms:
        raise InvalidConfigError(f"delivery_timeout_ms ({delivery_timeout_ms}) must be at least linger_ms + "
                                 f"request_timeout_ms ({linger_ms + request_timeout_ms}), as in Kafka")
