"""What ``rill dlq list`` shows: a dead-letter topic summed up from its records' ``dlq.*`` headers.

``DeadLetterSummary`` takes records one at a time (constant memory per
error type, whatever the topic's size): the count, the oldest and newest
copies by ``dlq.time``, and per ``dlq.error.type`` how many, from which
source topics, and the latest message. Records without the headers (not
written by run_handler) are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.table import Table
from rill.client.dead_letter import ERROR, ERROR_TYPE, TIME, source_of
from rill.client.types import Record
from rill.cluster.tables import Column, build_table

MESSAGE_WIDTH = 80


@dataclass
class Copy:
    """One dead-letter copy, as the summary remembers it."""

    time_ms: int
    partition: int
    offset: int
    source: str  # "<topic>-<partition> offset <n>"


@dataclass
class ErrorCount:
    error_type: str
    count: int = 0
    sources: set[str] = field(default_factory=set)
    last_message: str = ""
    last_time_ms: int = -1


@dataclass
class DeadLetterSummary:
    topic: str
    partitions: int
    count: int = 0
    foreign: int = 0  # records without dead-letter headers
    oldest: Copy | None = None
    newest: Copy | None = None
    errors: dict[str, ErrorCount] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        described = source_of(record)
        if described is None:
            self.foreign += 1
            return
        source, offset, _, _ = described
        self.count += 1
        time_ms = _int(record.headers.get(TIME), record.timestamp)
        copy = Copy(time_ms, record.partition, record.offset, f"{source.topic}-{source.partition} offset {offset}")
        if self.oldest is None or time_ms < self.oldest.time_ms:
            self.oldest = copy
        if self.newest is None or time_ms >= self.newest.time_ms:
            self.newest = copy
        error_type = _text(record.headers.get(ERROR_TYPE)) or "-"
        counted = self.errors.setdefault(error_type, ErrorCount(error_type))
        counted.count += 1
        counted.sources.add(source.topic)
        if time_ms >= counted.last_time_ms:
            counted.last_time_ms, counted.last_message = time_ms, _text(record.headers.get(ERROR))


ERROR_COLUMNS: list[Column] = [
    ("error type", lambda error: error.error_type),
    ("count", lambda error: error.count),
    ("source topics", lambda error: ",".join(sorted(error.sources))),
    ("latest message", lambda error: _shorten(error.last_message)),
]


def summary_lines(summary: DeadLetterSummary) -> list[str]:
    """The topic, its count, and the oldest and newest copies (when, where from, where stored)."""
    lines = [f"dead-letter topic {summary.topic}: {summary.count} record(s) in {summary.partitions} partition(s)"]
    if summary.foreign:
        lines.append(f"({summary.foreign} other record(s) without dlq.* headers not counted)")
    for label, copy in (("oldest", summary.oldest), ("newest", summary.newest)):
        if copy is not None:
            lines.append(f"{label}: {format_time_ms(copy.time_ms)}  {copy.source}  "
                         f"(stored at {summary.topic}-{copy.partition} offset {copy.offset})")
    return lines


def errors_table(summary: DeadLetterSummary) -> Table:
    """One line per error type, most frequent first."""
    errors = sorted(summary.errors.values(), key=lambda error: (-error.count, error.error_type))
    return build_table(f"errors by type: {len(errors)}", ERROR_COLUMNS, errors)


def format_time_ms(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _int(value: bytes | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", errors="replace")


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_WIDTH else text[:MESSAGE_WIDTH - 3] + "..."
