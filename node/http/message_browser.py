"""A page of one partition's records for the console, read with a group-less Consumer (assign and seek).

Blocking: run it on a worker thread, never on the broker's loop. The work
is bounded: at most MAX_LIMIT records, READ_DEADLINE_S of polling, fetches
of at most FETCH_MAX_BYTES, and each key, value and header cut to a preview
(value_preview.py) as soon as it is read. Without an offset or a time the
page is the partition's newest records, newest first; from an offset or a
time it runs forward, oldest first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rill.client import Consumer, TopicPartition
from rill.client.errors import RecordAtOffsetError
from rill.client.types import Record
from rill.node.http.value_preview import HEADER_PREVIEW_CHARS, preview

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
READ_DEADLINE_S = 5.0
POLL_S = 0.2
REQUEST_TIMEOUT_MS = 5_000
FETCH_MAX_BYTES = 8 * 1024 * 1024
PARTITION_FETCH_MAX_BYTES = 2 * 1024 * 1024


class OffsetNotInLogError(ValueError):
    """The asked offset is outside the partition's log: the request is wrong, not the cluster."""


@dataclass(frozen=True)
class PageRequest:
    """Which records: ``offset`` or ``timestamp_ms`` (at most one; neither: the newest) and how many."""

    topic: str
    partition: int
    offset: int | None = None
    timestamp_ms: int | None = None
    limit: int = DEFAULT_LIMIT


def read_page(bootstrap: str, request: PageRequest) -> dict[str, Any]:
    """The page as JSON-ready data: the log's bounds, the records and where the next page starts.

    Raises OffsetNotInLogError for an offset outside [log start, high watermark], and the client's
    RillError when the cluster cannot answer (UnknownTopicError if the topic went away meanwhile).
    """
    tp = TopicPartition(request.topic, request.partition)
    with Consumer(bootstrap, enable_auto_commit=False, max_poll_records=request.limit, fetch_max_wait_ms=100,
                  fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=PARTITION_FETCH_MAX_BYTES,
                  request_timeout_ms=REQUEST_TIMEOUT_MS, client_id="rill-console") as consumer:
        consumer.assign([tp])
        start = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        first = _first_offset(consumer, tp, request, start, end)
        newest = request.offset is None and request.timestamp_ms is None
        messages, next_offset, error = _read(consumer, tp, first, end, request.limit)
    return {"topic": tp.topic, "partition": tp.partition, "log_start_offset": start, "high_watermark": end,
            "order": "newest" if newest else "oldest", "limit": request.limit,
            "messages": messages[::-1] if newest else messages, "next_offset": next_offset, "error": error}


def _first_offset(consumer: Consumer, tp: TopicPartition, request: PageRequest, start: int, end: int) -> int:
    if request.offset is not None:
        if not start <= request.offset <= end:
            holds = f"holds offsets {start} to {end - 1}" if end > start else f"is empty (next offset {end})"
            raise OffsetNotInLogError(f"offset {request.offset} is out of range: {tp.topic}-{tp.partition} {holds}")
        return request.offset
    if request.timestamp_ms is not None:
        found = consumer.offsets_for_times({tp: request.timestamp_ms})[tp]
        return end if found is None else max(found, start)
    return max(start, end - request.limit)


def _read(consumer: Consumer, tp: TopicPartition, first: int, end: int, limit: int
          ) -> tuple[list[dict[str, Any]], int, str | None]:
    """Up to ``limit`` records from ``first`` below ``end``; (records, the next offset, an error or None).

    A record the consumer cannot read (a corrupt batch) ends the page with its error.
    """
    consumer.seek(tp, first)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + READ_DEADLINE_S
    position = first
    while len(messages) < limit and position < end and time.monotonic() < deadline:
        try:
            records = consumer.poll(POLL_S)
        except RecordAtOffsetError as error:
            return messages, position, str(error)
        if not records:  # a fetch may move past offsets that hold no records (compacted away)
            position = max(position, min(end, consumer.position(tp)))
        for record in records:
            if record.offset >= end:
                position = end
                break
            if len(messages) == limit:
                break
            messages.append(_shown(record))
            position = record.offset + 1
    if len(messages) < limit and position < end:
        return messages, position, f"reading stopped after {READ_DEADLINE_S:.0f} s at offset {position}"
    return messages, position, None


def _shown(record: Record) -> dict[str, Any]:
    """One record as the console shows it: offset, time, and previews of key, value and headers."""
    return {"offset": record.offset, "timestamp": record.timestamp, "key": preview(record.key),
            "value": preview(record.value),
            "headers": {name: preview(value, HEADER_PREVIEW_CHARS) for name, value in record.headers.items()}}
