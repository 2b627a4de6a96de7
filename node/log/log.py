"""One partition replica's log on local disk: the class the broker appends to and reads from."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from rill.client.batch import PATCH, BatchHeader, iter_batches, patched_prefix
from rill.client.errors import (
    CorruptRecordError,
    FencedLeaderEpochError,
    OffsetOutOfRangeError,
)
from rill.node.log.append_info import AppendInfo
from rill.node.log.checkpoint import read_offset_checkpoint, write_offset_checkpoint
from rill.node.log.cleaner import (
    CLEANER_CHECKPOINT_FILE,
    CleanableRange,
    build_offset_map,
    clean_segment,
    cleanable_range,
    swap_in,
)
from rill.node.log.config import LogConfig
from rill.node.log.files import fsync_directory, raises_storage_error, write_atomically
from rill.node.log.loader import CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE, load_log
from rill.node.log.segment import INT32_MAX, LogSegment

PATCHED_PREFIX_BYTES = PATCH.size  # base offset, batch length, leader epoch: outside the CRC


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Log:
    """The log of one partition replica: ordered segments in ``<data dir>/<topic>-<partition>/``.

    On disk: segments ``<base offset, 20 digits>.log`` with their
    ``.index`` and ``.timeindex`` (see LogSegment); ``leader-epoch-checkpoint``
    (see LeaderEpochCache); ``recovery-point-offset-checkpoint``, the offset
    below which everything is known to be fsynced; ``clean-shutdown``, a
    marker present only while the log is closed cleanly; in a compacted log,
    ``cleaner-offset-checkpoint`` (see :mod:`rill.node.log.cleaner`).

    Invariants: offsets are contiguous from ``log_start_offset`` (the first
    segment's base offset) to ``log_end_offset`` (the next offset to assign),
    except for the gaps compaction leaves in a compacted log (and that its
    followers copy); each segment's next offset is the next segment's base
    offset (in a compacted log, at most it); the
    recovery point is at most the log end offset; leader epochs recorded in
    the epoch cache never go back. A batch is validated (CRC included)
    before it is written and again when recovery reads it back; the append
    and read paths read batch headers only and never loop per record.

    Opening recovers (see :func:`load_log`). Disk errors leave public
    methods as StorageError; after one from ``append`` the broker should
    take the partition offline, as Kafka does with a failed log directory.

    Not thread-safe, and needs no lock: the broker calls every method from
    its one asyncio thread. Calls are short page-cache I/O, except
    ``flush``/``close`` (fsync) and opening (recovery), which a caller that
    cares may run in an executor, never concurrently with other calls.
    """

    @raises_storage_error
    def __init__(self, directory: Path, config: LogConfig, *, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.directory = directory
        self.config = config
        self._clock_ms = clock_ms
        loaded = load_log(directory, config, clock_ms())
        self._segments = loaded.segments
        self._recovery_point = loaded.recovery_point
        self._leader_epoch_cache = loaded.leader_epoch_cache
        self._cleaned_offset = read_offset_checkpoint(directory / CLEANER_CHECKPOINT_FILE) or 0
        self._unflushed_record_count = 0
        self._last_flush_ms = clock_ms()
        self._closed = False
        (directory / CLEAN_SHUTDOWN_FILE).unlink(missing_ok=True)
        fsync_directory(directory)

    # State

    @property
    def log_start_offset(self) -> int:
        return self._segments.first.base_offset

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets."""
        return self._segments.active.next_offset

    @property
    def size_bytes(self) -> int:
        return self._segments.size_bytes

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def recovery_point(self) -> int:
        """Every offset below this is fsynced."""
        return self._recovery_point

    @property
    def cleaned_offset(self) -> int:
        """The cleaner checkpoint: compaction has cleaned the closed segments below this offset."""
        return self._cleaned_offset

    @property
    def latest_epoch(self) -> int | None:
        """The newest leader epoch in the log, or None before any batch with one."""
        return self._leader_epoch_cache.latest_epoch

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(epoch, end offset) as Kafka's OffsetsForLeaderEpoch answers; (-1, -1) when unknown."""
        return self._leader_epoch_cache.end_offset_for(epoch, self.log_end_offset)

    # Appending

    @raises_storage_error
    def append(self, records: bytes | memoryview, leader_epoch: int) -> AppendInfo:
        """Append a producer's batches as leader: validate all, then assign offsets and stamp the epoch.

        Raises CorruptRecordError or RecordTooLargeError (nothing written)
        when any batch is bad, FencedLeaderEpochError when ``leader_epoch``
        is older than the latest epoch in the log.
        """
        batches = list(iter_batches(records, self.config.max_message_bytes))
        latest_epoch = self.latest_epoch
        if latest_epoch is not None and leader_epoch < latest_epoch:
            raise FencedLeaderEpochError(f"leader epoch {leader_epoch} is older than {latest_epoch}")
        if not batches:
            return AppendInfo.nothing_at(self.log_end_offset)
        headers, buffers = self._assign_offsets(memoryview(records), batches, leader_epoch)
        info = self._write(headers, buffers)
        if leader_epoch >= 0:
            self._leader_epoch_cache.assign(leader_epoch, info.first_offset)
        self._maybe_flush_by_count()
        return info

    def _assign_offsets(
        self, records: memoryview, batches: list[tuple[int, BatchHeader]], leader_epoch: int
    ) -> tuple[list[BatchHeader], list[bytes | memoryview]]:
        """Final headers, and the pieces to write: a new 16-byte prefix, then the rest of each batch unchanged."""
        next_offset = self.log_end_offset
        headers: list[BatchHeader] = []
        buffers: list[bytes | memoryview] = []
        for position, header in batches:
            headers.append(header._replace(base_offset=next_offset, leader_epoch=leader_epoch))
            buffers.append(patched_prefix(next_offset, header.batch_length, leader_epoch))
            buffers.append(records[position + PATCHED_PREFIX_BYTES : position + header.size])
            next_offset += header.record_count
        return headers, buffers

    @raises_storage_error
    def append_as_follower(self, records: bytes | memoryview) -> AppendInfo:
        """Append batches copied from the leader, verbatim; their offsets must continue this log.

        Raises CorruptRecordError when a batch is bad or the offsets are not
        contiguous, OffsetOutOfRangeError when the first batch does not start
        at the log end offset. Nothing is written then. A compacted log takes
        the leader's gaps: batches may start after the log end offset and
        after the previous batch's next offset.
        """
        headers = [header for _, header in iter_batches(records)]
        if not headers:
            return AppendInfo.nothing_at(self.log_end_offset)
        self._check_follows_log_end(headers)
        info = self._write(headers, [records])
        for header in headers:
            if header.leader_epoch >= 0:
                self._leader_epoch_cache.assign(header.leader_epoch, header.base_offset)
        self._maybe_flush_by_count()
        return info

    def _check_follows_log_end(self, headers: list[BatchHeader]) -> None:
        if not self._follows(self.log_end_offset, headers[0].base_offset):
            raise OffsetOutOfRangeError(
                f"follower append starts at {headers[0].base_offset}, log end offset is {self.log_end_offset}"
            )
        for previous, header in zip(headers, headers[1:]):
            if not self._follows(previous.next_offset, header.base_offset):
                raise CorruptRecordError(f"batch at offset {header.base_offset} does not follow {previous.last_offset}")

    def _follows(self, next_offset: int, base_offset: int) -> bool:
        """Whether a batch at ``base_offset`` may come where ``next_offset`` is next: exactly, or later
        in a compacted log."""
        return base_offset >= next_offset if self.config.compact else base_offset == next_offset

    def _write(self, headers: list[BatchHeader], buffers: list[bytes | memoryview]) -> AppendInfo:
        info = AppendInfo.of_batches(headers)
        segment = self._segment_for(info, len(headers))
        segment.append(headers, buffers)
        self._unflushed_record_count += info.record_count
        return info

    def _segment_for(self, info: AppendInfo, batch_count: int) -> LogSegment:
        """The active segment, rolled first if this append should not go into it."""
        segment = self._segments.active
        if segment.size_bytes and (
            segment.size_bytes > self.config.segment_bytes - info.size_bytes
            or self._clock_ms() - segment.created_ms > self.config.segment_ms
            or segment.index_would_overflow(batch_count)
            or info.last_offset - segment.base_offset > INT32_MAX
        ):
            segment = self._roll()
        return segment

    def _roll(self) -> LogSegment:
        self._segments.active.seal()
        segment = LogSegment.create(self.directory, self.log_end_offset, self.config, self._clock_ms())
        self._segments.add(segment)
        return segment

    # Reading

    @raises_storage_error
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """Whole batches from the one holding ``offset``: up to ``max_bytes``, but at least one batch (KIP-74).

        Never includes a batch whose base offset is ``max_offset`` (exclusive
        bound, such as the high watermark) or more. Reads one segment per
        call. Empty at the log end offset or ``max_offset``. Raises
        OffsetOutOfRangeError below the log start or above the log end. An
        offset compacted away reads from the next batch there is.
        """
        self._check_offset_in_range(offset)
        limit_offset = self.log_end_offset if max_offset is None else min(max_offset, self.log_end_offset)
        if offset >= limit_offset:
            return b""
        for segment in self._segments.starting_at(offset):
            if segment.base_offset >= limit_offset:
                break
            data = segment.read_batches(offset, max_bytes, limit_offset)
            if data:
                return data
        return b""

    def _check_offset_in_range(self, offset: int) -> None:
        if not self.log_start_offset <= offset <= self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside the log [{self.log_start_offset}, {self.log_end_offset}]"
            )

    @raises_storage_error
    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the earliest record stamped ``timestamp_ms`` or later, or None (ListOffsets)."""
        for segment in self._segments:
            if segment.max_timestamp_ms >= timestamp_ms:
                found = segment.find_offset_by_timestamp(timestamp_ms)
                if found is not None:
                    return found
        return None

    # Truncation and retention

    @raises_storage_error
    def truncate_to(self, offset: int) -> None:
        """Drop every batch at or after ``offset`` (from the start of the batch holding it).

        Below the log start offset, the log is emptied and restarts at
        ``offset``. At or past the log end offset, nothing happens.
        """
        if offset >= self.log_end_offset:
            return
        if offset < self.log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return
        for segment in self._segments.remove_after(offset):
            segment.delete()
        active = self._segments.active
        active.truncate_to(offset)
        active.flush()
        fsync_directory(self.directory)
        self._after_truncation()

    @raises_storage_error
    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and restart the log empty at ``offset`` (a follower far behind the leader)."""
        for segment in self._segments.remove_all():
            segment.delete()
        self._segments.add(LogSegment.create(self.directory, offset, self.config, self._clock_ms()))
        self._leader_epoch_cache.clear()
        self._store_recovery_point(offset)
        self._lower_cleaned_offset(offset)

    def _after_truncation(self) -> None:
        """Keep the epoch cache and the recovery point at or below the new log end.

        The lowered recovery point is stored at once: otherwise a crash could
        leave a checkpoint above batches appended after the truncation, and
        recovery would not scan them.
        """
        log_end_offset = self.log_end_offset
        self._leader_epoch_cache.truncate_from_end(log_end_offset)
        if self._recovery_point > log_end_offset:
            self._store_recovery_point(log_end_offset)
        self._lower_cleaned_offset(log_end_offset)

    def _store_recovery_point(self, offset: int) -> None:
        self._recovery_point = offset
        write_offset_checkpoint(self.directory / RECOVERY_POINT_FILE, offset)

    @raises_storage_error
    def delete_old_segments(self, now_ms: int) -> int:
        """Retention: delete whole inactive segments, by age then by size; return how many went.

        Nothing goes unless the cleanup policy has delete.
        """
        if not self.config.delete:
            return 0
        deleted = self._delete_oldest(self._expired_segment_count(now_ms))
        deleted += self._delete_oldest(self._excess_segment_count())
        return deleted

    def _expired_segment_count(self, now_ms: int) -> int:
        """Leading inactive segments whose newest record is older than retention.ms."""
        if self.config.retention_ms < 0:
            return 0
        oldest_kept_ms = now_ms - self.config.retention_ms
        count = 0
        for segment in self._segments.inactive():
            if segment.max_timestamp_ms >= oldest_kept_ms:
                break
            count += 1
        return count

    def _excess_segment_count(self) -> int:
        """Leading inactive segments that can go while the log stays at or above retention.bytes."""
        if self.config.retention_bytes < 0:
            return 0
        excess_bytes = self.size_bytes - self.config.retention_bytes
        count = 0
        for segment in self._segments.inactive():
            if excess_bytes - segment.size_bytes < 0:
                break
            excess_bytes -= segment.size_bytes
            count += 1
        return count

    def _delete_oldest(self, count: int) -> int:
        if not count:
            return 0
        for _ in range(count):
            self._segments.remove_first().delete()
        fsync_directory(self.directory)
        self._leader_epoch_cache.truncate_from_start(self.log_start_offset)
        self._recovery_point = max(self._recovery_point, self.log_start_offset)
        return count

    # Compaction

    def dirty_ratio(self, now_ms: int, end_offset: int | None = None) -> float:
        """Share of the cleanable bytes written since the last compaction (0.0 unless the policy has compact).

        ``end_offset`` bounds what compaction may consider; the broker passes
        the high watermark, so that a record a leader change could still
        truncate never replaces a committed one. None: the log end offset.
        """
        if not self.config.compact:
            return 0.0
        return self._cleanable(now_ms, end_offset).dirty_ratio(self._cleaned_offset)

    @raises_storage_error
    def compact(self, now_ms: int, end_offset: int | None = None) -> bool:
        """One compaction pass when the dirty ratio reaches min.cleanable.dirty.ratio; say whether it ran.

        Rewrites closed segments only (see :mod:`rill.node.log.cleaner`);
        offsets, the log start and end offsets and the epoch cache stay.
        """
        if not self.config.compact:
            return False
        cleanable = self._cleanable(now_ms, end_offset)
        ratio = cleanable.dirty_ratio(self._cleaned_offset)
        if ratio == 0 or ratio < self.config.min_cleanable_dirty_ratio:
            return False
        latest = build_offset_map(self._segments, self._end_offset_bound(end_offset))
        for segment in cleanable.segments:
            self._clean(segment, latest, now_ms)
        self._cleaned_offset = max(self._cleaned_offset, cleanable.end_offset)
        write_offset_checkpoint(self.directory / CLEANER_CHECKPOINT_FILE, self._cleaned_offset)
        return True

    def _end_offset_bound(self, end_offset: int | None) -> int:
        return self.log_end_offset if end_offset is None else min(end_offset, self.log_end_offset)

    def _cleanable(self, now_ms: int, end_offset: int | None) -> CleanableRange:
        return cleanable_range(self._segments, self.config, now_ms, self._end_offset_bound(end_offset))

    def _clean(self, segment: LogSegment, latest: dict[bytes, int], now_ms: int) -> None:
        """Put the cleaned copy of one closed segment in its place, or drop the segment if nothing stays."""
        cleaned = clean_segment(self.directory, segment, latest, now_ms, self.config)
        if cleaned is None:
            return
        if cleaned.size_bytes == 0 and segment is not self._segments.first:
            cleaned.delete()
            self._segments.remove(segment)
            segment.delete()
            fsync_directory(self.directory)
            return
        swap_in(self.directory, segment.base_offset)
        segment.close()
        replacement = LogSegment.open(self.directory, segment.base_offset, self.config, segment.created_ms)
        if not replacement.load():
            replacement.recover()
        self._segments.replace(replacement)

    def _lower_cleaned_offset(self, offset: int) -> None:
        """Keep the cleaner checkpoint at or below ``offset`` after the log was cut there."""
        if self._cleaned_offset > offset:
            self._cleaned_offset = offset
            write_offset_checkpoint(self.directory / CLEANER_CHECKPOINT_FILE, offset)

    # Flushing and lifecycle

    @raises_storage_error
    def flush(self) -> None:
        """fsync every segment file changed since its last flush, then move the recovery checkpoint to the log end.

        Not only those after the recovery point: a segment rolled just after
        a flush gained its final time index entry when it was sealed.
        """
        self._flush(self._clock_ms())

    def _flush(self, now_ms: int) -> None:
        for segment in self._segments:
            segment.flush()
        self._store_recovery_point(self.log_end_offset)
        self._unflushed_record_count = 0
        self._last_flush_ms = now_ms

    def _maybe_flush_by_count(self) -> None:
        flush_messages = self.config.flush_messages
        if flush_messages is not None and self._unflushed_record_count >= flush_messages:
            self._flush(self._clock_ms())

    @raises_storage_error
    def flush_if_due(self, now_ms: int) -> bool:
        """Flush when flush.ms has passed since the last flush and something is unflushed; say whether it did."""
        flush_ms = self.config.flush_ms
        if flush_ms is None or self._recovery_point >= self.log_end_offset or now_ms - self._last_flush_ms < flush_ms:
            return False
        self._flush(now_ms)
        return True

    @raises_storage_error
    def close(self) -> None:
        """Flush, close every file, and leave the clean-shutdown marker so the next open skips the scan."""
        if self._closed:
            return
        self._segments.active.seal()
        self._flush(self._clock_ms())
        for segment in self._segments:
            segment.close()
        write_atomically(self.directory / CLEAN_SHUTDOWN_FILE, b"")
        self._closed = True

    @raises_storage_error
    def delete(self) -> None:
        """Close every file and remove the partition directory."""
        for segment in self._segments:
            segment.close()
        self._closed = True
        shutil.rmtree(self.directory)

    def __repr__(self) -> str:
        return (
            f"Log({self.directory.name}, log_start_offset={self.log_start_offset}, "
            f"log_end_offset={self.log_end_offset}, segments={self.segment_count})"
        )
