"""PartitionReader: reads given offset ranges of partitions as they are stored, outside any group.

The dead-letter machinery needs a record's stored bytes (a consumer with
deserializers hands the application objects) and needs to read a
dead-letter partition backwards from its end; both are "read offsets
[start, end) of one partition", which this does with a group-less Consumer
without deserializers, created on first use. Bounded: a range that does
not advance for ``request_timeout_ms`` raises RequestTimeoutError.
Not thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from rill.client.errors import RequestTimeoutError
from rill.client.types import Record, TopicPartition

POLL_S = 0.1
FETCH_MAX_WAIT_MS = 100


class PartitionReader:
    """Reads stored records of any partition by offset range."""

    def __init__(self, bootstrap: str, request_timeout_ms: int = 30_000):
        self._bootstrap = bootstrap
        self._timeout_s = request_timeout_ms / 1000
        self._consumer = None

    def _reader(self):
        if self._consumer is None:
            from rill.client.consumer import Consumer  # the consumer imports the client's heavier parts

            self._consumer = Consumer(self._bootstrap, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                      request_timeout_ms=int(self._timeout_s * 1000),
                                      client_id="rill-partition-reader")
        return self._consumer

    def bounds(self, partition: TopicPartition) -> tuple[int, int]:
        """The partition's first offset still stored and its end (high watermark)."""
        reader = self._reader()
        return reader.beginning_offsets([partition])[partition], reader.end_offsets([partition])[partition]

    def read(self, partition: TopicPartition, start: int, end: int) -> Iterator[Record]:
        """The stored records with ``start <= offset < end`` (``end`` at most the log end), in offset order."""
        if start >= end:
            return
        reader = self._reader()
        reader.assign([partition])
        reader.seek(partition, start)
        position = start
        deadline = time.monotonic() + self._timeout_s
        while position < end:
            records = reader.poll(POLL_S)
            if records:
                deadline = time.monotonic() + self._timeout_s
            for record in records:
                if record.offset >= end:
                    return
                yield record
            position = reader.position(partition)
            if time.monotonic() > deadline:
                raise RequestTimeoutError(f"reading {partition.topic}-{partition.partition} [{start}, {end}) made "
                                          f"no progress at offset {position} for {self._timeout_s:g} s")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
