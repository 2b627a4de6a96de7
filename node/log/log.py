"""One partition replica's log on local disk: the class the broker appends to and reads from."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

from rill.client.batch import HEADER_SIZE, PATCH, BatchHeader, check_payload, iter_batches, patched_prefix
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
    CompactionAborted,
    build_offset_map,
    clean_segment,
    cleanable_range,
    swap_in,
)
from rill.node.log.config import LogConfig
from rill.node.log.disk_work import DiskWork
from rill.node.log.files import fsync_directory, raises_storage_error
from rill.node.log.loader import CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE, load_log
from rill.node.log.producer_state import ProducerStateManager, ProducerStateSettings
from rill.node.log.segment import INT32_MAX, LogSegment

PATCHED_PREFIX_BYTES = PATCH.size  # base offset, batch length, leader epoch: outside the CRC


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class PendingFlush(NamedTuple):
    """A flush between its halves: the files to fsync, and the log end offset they make safe."""

    work: DiskWork
    end_offset: int


class CompactionPlan(NamedTuple):
    """What a compaction pass will do, decided on the loop: clean ``cleanable`` with an offset map of
    ``segments`` (every segment then) up to ``end_offset``."""

    cleanable: CleanableRange
    segments: list[LogSegment]
    end_offset: int
    first_base_offset: int
    cleaned_offset: int
    now_ms: int


class CompactionResult(NamedTuple):
    """What a pass changed on disk, for the loop to take in: (old, cleaned) segments swapped, emptied
    segments whose files are gone, and the new cleaner checkpoint."""

    replaced: list[tuple[LogSegment, LogSegment]]
    removed: list[LogSegment]
    cleaned_offset: int


class Log:
    """The log of one partition replica: ordered segments in ``<data dir>/<topic>-<partition>/``.

    On disk: segments ``<base offset, 20 digits>.log`` with their
    ``.index`` and ``.timeindex`` (see LogSegment); ``leader-epoch-checkpoint``
    (see LeaderEpochCache); ``recovery-point-offset-checkpoint``, the offset
    below which everything is known to be fsynced; in a compacted log,
    ``cleaner-offset-checkpoint`` (see :mod:`rill.node.log.cleaner`);
    ``<offset>.snapshot``, the idempotent producers' state below that offset,
    written at each roll and at close (see :mod:`rill.node.log.producer_state`).

    Invariants: offsets are contiguous from ``log_start_offset`` (the first
    segment's base offset) to ``log_end_offset`` (the next offset to assign),
    except for the gaps compaction leaves in a compacted log (and that its
    followers copy); each segment's next offset is the next segment's base
    offset (in a compacted log, at most it); the
    recovery point is at most the log end offset; leader epochs recorded in
    the epoch cache never go back. A batch is validated (CRC included)
    before it is written and again when recovery reads it back; the append
    and read paths read batch headers only and never loop per record.

    Opening recovers (see :func:`load_log`), unless the caller vouches
    that the log was closed cleanly (``clean_shutdown``: the LogManager
    keeps one clean-shutdown marker per data directory, as Kafka does); a
    ``clean-shutdown`` marker an older version left in the log's own
    directory counts too, and is removed at open. Disk errors leave public
    methods as StorageError; after one the broker takes the partition
    offline, as Kafka does with a failed log directory (a failed append
    leaves nothing behind: see LogSegment.append).

    Slow operations come in halves, so that their disk work can leave the
    broker's event loop: a loop half changes the state at once and returns
    the file work (fsyncs of duplicated descriptors, unlinks of files it
    renamed for deletion), which touches no Log state and may run on another
    thread. Flush: ``start_flush``, ``complete_flush``, ``finish_flush``;
    truncation: ``start_truncation`` and ``start_full_truncation``;
    retention: ``start_retention``; compaction: ``plan_compaction``,
    ``run_compaction`` (reads closed segments, writes and swaps in their
    cleaned copies), ``apply_compaction``. The one-call forms (``flush``,
    ``truncate_to``, ``delete_old_segments``, ``compact``) run both halves in
    turn. A lowered recovery point is stored by the loop half, before any
    later append; the epoch cache file after a truncation or retention is
    left to the file work (the loader cuts a stale one to the log).

    Not thread-safe: every method but the file-work halves runs on one
    thread (the broker's asyncio thread). Between a slow operation's halves
    the caller keeps the log's other slow operations away (the broker holds
    the log's lock in LogExecutor); appends and reads may go on meanwhile.
    Opening (recovery) may run on another thread before the log is shared.
    """

    @raises_storage_error
    def __init__(self, directory: Path, config: LogConfig, *, clock_ms: Callable[[], int] = wall_clock_ms,
                 producer_settings: ProducerStateSettings | None = None, clean_shutdown: bool = False) -> None:
        self.directory = directory
        self.config = config
        self._clock_ms = clock_ms
        loaded = load_log(directory, config, clock_ms(), producer_settings, clean_shutdown)
        self._segments = loaded.segments
        self._recovery_point = loaded.recovery_point
        self._leader_epoch_cache = loaded.leader_epoch_cache
        self._producer_state: ProducerStateManager = loaded.producer_state
        self._cleaned_offset = read_offset_checkpoint(directory / CLEANER_CHECKPOINT_FILE) or 0
        self._unflushed_record_count = 0
        self._last_flush_ms = clock_ms()
        self._checkpoint_lock = threading.Lock()  # the loop's flushes and the executor's write one file
        self._checkpointed = loaded.checkpointed_recovery_point  # the file's value, under the lock
        self._closed = False
        if loaded.legacy_marker:
            _remove_legacy_marker(directory)

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

    @property
    def producer_state(self) -> ProducerStateManager:
        """The idempotent producers' state of this replica (read it; the Log changes it)."""
        return self._producer_state

    def remove_expired_producers(self, now_ms: int) -> int:
        """Forget producers idle for producer_id_expiration_ms; return how many."""
        return self._producer_state.remove_expired(now_ms)

    # Appending

    @raises_storage_error
    def append(self, records: bytes | memoryview, leader_epoch: int) -> AppendInfo:
        """Append a producer's batches as leader: validate all, then assign offsets and stamp the epoch.

        Raises CorruptRecordError or RecordTooLargeError (nothing written)
        when any batch is bad (its header, CRC, or a payload that does not hold
        its record count: check_payload), FencedLeaderEpochError when
        ``leader_epoch`` is older than the latest epoch in the log.

        Idempotent batches (producer id 0 or more) are checked against the
        producer state first (ProducerStateManager.check_append): a producer
        error writes nothing; a retry of batches already stored writes nothing
        and returns their original offsets.
        """
        batches = list(iter_batches(records, self.config.max_message_bytes))
        view = memoryview(records)
        idempotent = False
        for position, header in batches:
            check_payload(header, view[position + HEADER_SIZE : position + header.size])
            idempotent = idempotent or header.producer_id >= 0
        latest_epoch = self.latest_epoch
        if latest_epoch is not None and leader_epoch < latest_epoch:
            raise FencedLeaderEpochError(f"leader epoch {leader_epoch} is older than {latest_epoch}")
        if not batches:
            return AppendInfo.nothing_at(self.log_end_offset)
        if idempotent:
            duplicate = self._producer_state.check_append([header for _, header in batches])
            if duplicate is not None:
                return duplicate
        headers, buffers = self._assign_offsets(memoryview(records), batches, leader_epoch)
        info = self._write(headers, buffers)
        if idempotent:
            self._producer_state.record(headers, self._clock_ms())
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
        self._producer_state.record(headers, self._clock_ms())
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
        """Start a new active segment, and a producer state snapshot named like it (Kafka's)."""
        self._segments.active.seal()
        segment = LogSegment.create(self.directory, self.log_end_offset, self.config, self._clock_ms())
        self._segments.add(segment)
        self._producer_state.write_snapshot(segment.base_offset)
        return segment

    # Reading

    @raises_storage_error
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes | memoryview:
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
        self.start_truncation(offset).run()

    @raises_storage_error
    def start_truncation(self, offset: int) -> DiskWork:
        """The loop half of :meth:`truncate_to`: the log ends at the cut when this returns; the work left
        fsyncs the cut segment and deletes the segments after it."""
        if offset >= self.log_end_offset:
            return DiskWork.nothing(self.directory)
        if offset < self.log_start_offset:
            return self.start_full_truncation(offset)
        deleted = [path for segment in self._segments.remove_after(offset) for path in segment.rename_for_deletion()]
        active = self._segments.active
        active.truncate_to(offset)
        epochs_changed = self._after_truncation()
        self._producer_state.truncated(self._segments, self._clock_ms())
        return DiskWork(self.directory, active.take_unflushed(), deleted, self._epoch_write_if(epochs_changed))

    @raises_storage_error
    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and restart the log empty at ``offset`` (a follower far behind the leader)."""
        self.start_full_truncation(offset).run()

    @raises_storage_error
    def start_full_truncation(self, offset: int) -> DiskWork:
        """The loop half of :meth:`truncate_fully_and_start_at`; the work left deletes the old segments."""
        deleted = [path for segment in self._segments.remove_all() for path in segment.rename_for_deletion()]
        deleted += self._producer_state.clear()
        self._segments.add(LogSegment.create(self.directory, offset, self.config, self._clock_ms()))
        self._leader_epoch_cache.clear()
        self._store_recovery_point(offset)
        self._lower_cleaned_offset(offset)
        return DiskWork(self.directory, [], deleted)

    def _after_truncation(self) -> bool:
        """Keep the epoch cache and the recovery point at or below the new log end; say whether the epoch
        cache changed (its file is left to the truncation's file work: the loader cuts a stale one).

        The lowered recovery point is stored at once: otherwise a crash could
        leave a checkpoint above batches appended after the truncation, and
        recovery would not scan them.
        """
        log_end_offset = self.log_end_offset
        epochs_changed = self._leader_epoch_cache.truncate_from_end(log_end_offset, persist=False)
        if self._recovery_point > log_end_offset:
            self._store_recovery_point(log_end_offset)
        self._lower_cleaned_offset(log_end_offset)
        return epochs_changed

    def _epoch_write_if(self, changed: bool) -> tuple[Callable[[], None], ...]:
        return (self._leader_epoch_cache.write,) if changed else ()

    def _store_recovery_point(self, offset: int) -> None:
        self._recovery_point = offset
        self._write_recovery_checkpoint(offset)

    def _write_recovery_checkpoint(self, offset: int) -> None:
        """Store the recovery point; not again when the file holds it already (closing an idle log, or
        flushing one whose end did not move, then costs no fsync)."""
        with self._checkpoint_lock:
            if offset != self._checkpointed:
                write_offset_checkpoint(self.directory / RECOVERY_POINT_FILE, offset)
                self._checkpointed = offset

    @raises_storage_error
    def delete_old_segments(self, now_ms: int) -> int:
        """Retention: delete whole inactive segments, by age then by size; return how many went.

        Nothing goes unless the cleanup policy has delete.
        """
        count, work = self.start_retention(now_ms)
        work.run()
        return count

    @raises_storage_error
    def start_retention(self, now_ms: int) -> tuple[int, DiskWork]:
        """The loop half of :meth:`delete_old_segments`: the segments leave the log (their files renamed);
        the work left deletes their files."""
        if not self.config.delete:
            return 0, DiskWork.nothing(self.directory)
        expired = self._expired_segment_count(now_ms)
        deleted = self._remove_oldest(expired)
        excess = self._excess_segment_count()
        deleted += self._remove_oldest(excess)
        if expired + excess:
            deleted += self._producer_state.snapshots_below(self.log_start_offset)
        epochs_changed = expired + excess > 0 and self._leader_epoch_cache.truncate_from_start(
            self.log_start_offset, persist=False)
        return expired + excess, DiskWork(self.directory, [], deleted, self._epoch_write_if(epochs_changed))

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

    def _remove_oldest(self, count: int) -> list[Path]:
        """Take the first ``count`` segments out of the log; the paths of their files, renamed for deletion."""
        if not count:
            return []
        deleted = []
        for _ in range(count):
            deleted += self._segments.remove_first().rename_for_deletion()
        self._recovery_point = max(self._recovery_point, self.log_start_offset)
        return deleted

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
        plan = self.plan_compaction(now_ms, end_offset)
        if plan is None:
            return False
        self.apply_compaction(self.run_compaction(plan))
        return True

    def plan_compaction(self, now_ms: int, end_offset: int | None = None) -> CompactionPlan | None:
        """The loop half that decides: None unless the dirty ratio reaches min.cleanable.dirty.ratio."""
        if not self.config.compact:
            return None
        bound = self._end_offset_bound(end_offset)
        cleanable = cleanable_range(self._segments, self.config, now_ms, bound)
        ratio = cleanable.dirty_ratio(self._cleaned_offset)
        if ratio == 0 or ratio < self.config.min_cleanable_dirty_ratio:
            return None
        return CompactionPlan(cleanable, list(self._segments), bound, self.log_start_offset, self._cleaned_offset,
                              now_ms)

    @raises_storage_error
    def run_compaction(self, plan: CompactionPlan, stop: threading.Event | None = None) -> CompactionResult:
        """The file half: build the offset map, then clean and swap in each planned segment in turn.

        Reads closed segments and the planned part of the active one (whole
        batches below the plan's end offset, which appends do not change);
        changes no Log state. When ``stop`` is set it ends before the next
        segment's swap: CompactionAborted if nothing was swapped yet (the log
        is as it was), else the result so far (apply it: those files changed).
        """
        latest = build_offset_map(plan.segments, plan.end_offset, stop)
        replaced: list[tuple[LogSegment, LogSegment]] = []
        removed: list[LogSegment] = []
        cleaned_offset = plan.cleaned_offset
        segments = plan.cleanable.segments
        for number, segment in enumerate(segments):
            try:
                cleaned = clean_segment(self.directory, segment, latest, plan.now_ms, self.config, stop)
            except CompactionAborted:
                if replaced or removed:
                    break
                raise
            if cleaned is not None:
                self._swap(plan, segment, cleaned, replaced, removed)
            following = segments[number + 1].base_offset if number + 1 < len(segments) else plan.cleanable.end_offset
            cleaned_offset = max(cleaned_offset, following)
        write_offset_checkpoint(self.directory / CLEANER_CHECKPOINT_FILE, cleaned_offset)
        return CompactionResult(replaced, removed, cleaned_offset)

    def _swap(self, plan: CompactionPlan, segment: LogSegment, cleaned: LogSegment,
              replaced: list[tuple[LogSegment, LogSegment]], removed: list[LogSegment]) -> None:
        """Put the cleaned copy's files in the place of the segment's, or delete both if nothing stays (unless
        it is the first segment, which holds the log start offset), and its producer state snapshot with it.
        The old segment's open descriptors keep serving reads until :meth:`apply_compaction` closes them."""
        if cleaned.size_bytes == 0 and segment.base_offset != plan.first_base_offset:
            cleaned.delete()
            for path in segment.file_paths():
                path.unlink(missing_ok=True)
            self._producer_state.delete_snapshot(segment.base_offset)
            fsync_directory(self.directory)
            removed.append(segment)
            return
        swap_in(self.directory, segment.base_offset)
        replacement = LogSegment.open(self.directory, segment.base_offset, self.config, segment.created_ms)
        if not replacement.load():
            replacement.recover()
        replaced.append((segment, replacement))

    def apply_compaction(self, result: CompactionResult) -> None:
        """The loop half that takes the swapped segments in and closes the old ones."""
        for old, replacement in result.replaced:
            self._segments.replace(replacement)
            old.close()
        for old in result.removed:
            self._segments.remove(old)
            old.close()
        self._cleaned_offset = result.cleaned_offset

    def _end_offset_bound(self, end_offset: int | None) -> int:
        return self.log_end_offset if end_offset is None else min(end_offset, self.log_end_offset)

    def _cleanable(self, now_ms: int, end_offset: int | None) -> CleanableRange:
        return cleanable_range(self._segments, self.config, now_ms, self._end_offset_bound(end_offset))

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
        pending = self.start_flush(now_ms)
        self.complete_flush(pending)
        self.finish_flush(pending)

    @raises_storage_error
    def start_flush(self, now_ms: int) -> PendingFlush:
        """The loop half of a flush: the changed files (duplicated descriptors) and the log end they cover."""
        descriptors: list[int] = []
        try:
            for segment in self._segments:
                descriptors += segment.take_unflushed()
        except OSError:
            for descriptor in descriptors:
                os.close(descriptor)
            raise
        self._unflushed_record_count = 0
        self._last_flush_ms = now_ms
        return PendingFlush(DiskWork(self.directory, descriptors, []), self.log_end_offset)

    @raises_storage_error
    def complete_flush(self, pending: PendingFlush) -> None:
        """The file half: fsync, then store the recovery point that makes safe (may run on another thread)."""
        pending.work.run()
        self._write_recovery_checkpoint(pending.end_offset)

    def finish_flush(self, pending: PendingFlush) -> None:
        """The loop half that records the new recovery point."""
        self._recovery_point = max(self._recovery_point, min(pending.end_offset, self.log_end_offset))

    def _maybe_flush_by_count(self) -> None:
        """flush.messages: fsync in the append itself, before the producer hears back, as Kafka does."""
        flush_messages = self.config.flush_messages
        if flush_messages is not None and self._unflushed_record_count >= flush_messages:
            self._flush(self._clock_ms())

    def flush_due(self, now_ms: int) -> bool:
        """Whether flush.ms has passed since the last flush and something is unflushed."""
        flush_ms = self.config.flush_ms
        return (flush_ms is not None and self._recovery_point < self.log_end_offset
                and now_ms - self._last_flush_ms >= flush_ms)

    @raises_storage_error
    def flush_if_due(self, now_ms: int) -> bool:
        """Flush when :meth:`flush_due`; say whether it did."""
        if not self.flush_due(now_ms):
            return False
        self._flush(now_ms)
        return True

    @raises_storage_error
    def close(self) -> None:
        """Flush, write the producers' snapshot and close every file: the log is then whole on disk, and
        the next open may skip the scan if its opener says so (``clean_shutdown``; the LogManager writes
        its data directory's marker once every log closed)."""
        if self._closed:
            return
        self._segments.active.seal()
        self._flush(self._clock_ms())
        self._producer_state.write_snapshot(self.log_end_offset)
        for segment in self._segments:
            segment.close()
        self._closed = True

    @raises_storage_error
    def close_files(self) -> None:
        """Close every file, without a flush: for a log taken offline after a disk error (the LogManager
        then writes no clean-shutdown marker, so the next start recovers it) or whose directory is about to
        be deleted."""
        for segment in self._segments:
            segment.close()
        self._closed = True

    def __repr__(self) -> str:
        return (
            f"Log({self.directory.name}, log_start_offset={self.log_start_offset}, "
            f"log_end_offset={self.log_end_offset}, segments={self.segment_count})"
        )


def _remove_legacy_marker(directory: Path) -> None:
    """Remove the per-partition clean-shutdown marker an older version wrote at close, durably, before
    anything is appended: left there, it would have a crash later taken for a clean shutdown. Only the
    first start after an upgrade pays this fsync per log."""
    (directory / CLEAN_SHUTDOWN_FILE).unlink()
    fsync_directory(directory)
