"""Per-partition log settings, named and defaulted as Kafka's topic configs."""

from __future__ import annotations

from dataclasses import dataclass

from rill.client.errors import InvalidConfigError

MINIMUM_SEGMENT_BYTES = 14  # Kafka's lower bound for segment.bytes
MAXIMUM_SEGMENT_BYTES = 2**31 - 1  # index positions are i32, as in Kafka
INDEX_ENTRY_BYTES_MAX = 12  # the larger of the two index entries (time index)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The settings of one partition's log, Kafka's names in snake_case with Kafka's defaults.

    - segment_bytes: roll the active segment before it would grow past this size.
    - segment_ms: roll the active segment once it is older than this.
    - retention_ms: delete whole segments whose newest record is older than this (-1: keep forever).
    - retention_bytes: delete the oldest segments while the log stays at or above this (-1: no limit).
    - flush_messages: fsync after this many records (None: leave it to the operating system).
    - flush_ms: fsync when this long has passed since the last flush (None: never by time).
    - max_message_bytes: the largest batch accepted, header included.
    - index_interval_bytes: log bytes between two sparse index entries.
    - segment_index_bytes: the size an index may reach before the segment rolls.
    - compact: keep the latest record of each key, removing older ones (cleanup.policy has "compact").
      Offsets of a compacted log have gaps, in its segments and between them.
    - delete: apply retention_ms and retention_bytes (cleanup.policy has "delete").
    - delete_retention_ms: how long compaction keeps a tombstone (a record with a null value),
      counted from its batch's max timestamp.
    - min_cleanable_dirty_ratio: compact only when at least this fraction of the cleanable bytes
      was written since the last compaction.
    - min_compaction_lag_ms: compaction leaves segments holding a record newer than this alone.

    Immutable and so thread-safe. Invalid values raise InvalidConfigError on construction.
    """

    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    retention_ms: int = 604800000
    retention_bytes: int = -1
    flush_messages: int | None = None
    flush_ms: int | None = None
    max_message_bytes: int = 1048588
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10485760
    compact: bool = False
    delete: bool = True
    delete_retention_ms: int = 86400000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0

    def __post_init__(self) -> None:
        _require(
            MINIMUM_SEGMENT_BYTES <= self.segment_bytes <= MAXIMUM_SEGMENT_BYTES,
            f"segment_bytes must be from {MINIMUM_SEGMENT_BYTES} to {MAXIMUM_SEGMENT_BYTES}",
        )
        _require(self.segment_ms >= 1, "segment_ms must be at least 1")
        _require(self.retention_ms >= -1, "retention_ms must be -1 or more")
        _require(self.retention_bytes >= -1, "retention_bytes must be -1 or more")
        _require(self.flush_messages is None or self.flush_messages >= 1, "flush_messages must be None or at least 1")
        _require(self.flush_ms is None or self.flush_ms >= 0, "flush_ms must be None or at least 0")
        _require(self.max_message_bytes >= 0, "max_message_bytes must be at least 0")
        _require(self.index_interval_bytes >= 0, "index_interval_bytes must be at least 0")
        _require(
            self.segment_index_bytes >= INDEX_ENTRY_BYTES_MAX,
            f"segment_index_bytes must be at least {INDEX_ENTRY_BYTES_MAX}",
        )
        _require(self.compact or self.delete, "the cleanup policy needs compact, delete or both")
        _require(self.delete_retention_ms >= 0, "delete_retention_ms must be at least 0")
        _require(0 <= self.min_cleanable_dirty_ratio <= 1, "min_cleanable_dirty_ratio must be from 0 to 1")
        _require(self.min_compaction_lag_ms >= 0, "min_compaction_lag_ms must be at least 0")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidConfigError(message)
