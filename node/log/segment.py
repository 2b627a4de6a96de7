"""One segment of a partition log: a .log file of whole batches and its two sparse indexes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

from rill.client.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    check_batch,
    complete_prefix,
    decode_payload,
    iter_batches,
    read_header,
)
from rill.client.errors import CorruptRecordError
from rill.node.log.config import LogConfig
from rill.node.log.files import open_for_append, write_fully
from rill.node.log.offset_index import OffsetIndex
from rill.node.log.time_index import TimeIndex

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"  # a segment file renamed for deletion on another thread; the loader removes leftovers
OFFSET_DIGITS = 20
NO_TIMESTAMP = -1
INT32_MAX = 2**31 - 1
# A header walk reads this much at a time, so that walking past the batches
# between two index entries (index_interval_bytes apart) is one pread.
WALK_CHUNK_BYTES = 16384
# Recovery reads and CRC-checks the log in pieces of this size.
RECOVERY_CHUNK_BYTES = 8 * 1024 * 1024
RECENT_BATCHES_MAX = 64  # batch positions a segment remembers from its latest appends (translate_offset)
MINIMUM_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD


def segment_file_name(base_offset: int, suffix: str) -> str:
    """``00000000000000000042.log``: base offset padded to 20 digits, so that ``ls`` sorts segments."""
    return f"{base_offset:0{OFFSET_DIGITS}d}{suffix}"


def parse_base_offset(file_name: str, suffix: str) -> int | None:
    """The base offset in a segment file name with ``suffix``, or None when it is not one."""
    stem = file_name[: -len(suffix)]
    if not file_name.endswith(suffix) or len(stem) != OFFSET_DIGITS or not stem.isdigit():
        return None
    return int(stem)


class LogSegment:
    """A contiguous run of batches of one partition, in one file, with its indexes.

    On disk, in the partition directory, named by the base offset (the
    offset of its first batch) padded to 20 digits:
    ``<base>.log`` holds whole record batches exactly as they travel on the
    wire, back to back; ``<base>.index`` and ``<base>.timeindex`` are the
    sparse :class:`OffsetIndex` and :class:`TimeIndex`, one entry per
    ``index_interval_bytes`` of log.

    Invariants: the first batch's base offset is the segment's base offset;
    each next batch starts at the offset after the previous one's last
    (offsets strictly increase, without gaps); ``size_bytes`` is the file
    length and ends on a batch boundary; ``next_offset`` is the offset after
    the last batch (the base offset when empty); ``max_timestamp_ms`` is the
    largest batch max timestamp. In a compacted log (``config.compact``)
    offsets may skip: the first batch may start after the base offset and a
    batch after the previous one's next offset, as the cleaner leaves them.
    Appends write the log before the index entries that point into it.
    ``created_ms`` is when this process created or opened the segment;
    segment.ms counts from there, as Kafka does for batches without
    timestamps.

    Only headers are read on the append and read paths, one loop step per
    batch and never per record; records are decoded only to answer
    :meth:`find_offset_by_timestamp`.

    Not thread-safe: the owning Log is used from one thread.
    """

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        config: LogConfig,
        created_ms: int,
        create_new: bool = False,
        file_suffix: str = "",
    ) -> None:
        self.base_offset = base_offset
        self.created_ms = created_ms
        self.log_path = directory / (segment_file_name(base_offset, LOG_SUFFIX) + file_suffix)
        self._index_interval_bytes = config.index_interval_bytes
        self._allow_gaps = config.compact
        self._descriptor = open_for_append(self.log_path, truncate=create_new)
        self.size_bytes = os.fstat(self._descriptor).st_size
        self.offset_index = OffsetIndex(
            directory / (segment_file_name(base_offset, INDEX_SUFFIX) + file_suffix),
            base_offset,
            config.segment_index_bytes,
            create_new,
        )
        self.time_index = TimeIndex(
            directory / (segment_file_name(base_offset, TIME_INDEX_SUFFIX) + file_suffix),
            base_offset,
            config.segment_index_bytes,
            create_new,
        )
        self.next_offset = base_offset
        self.max_timestamp_ms = NO_TIMESTAMP
        self.offset_of_max_timestamp = base_offset
        self._bytes_since_last_index_entry = 0
        self._unflushed = False
        # base offset -> (position, header) of the batches this process appended last: followers and tailing
        # consumers fetch from a recent batch's base offset, found here without an index lookup and header walk
        self._recent_batches: dict[int, tuple[int, BatchHeader]] = {}

    @classmethod
    def create(
        cls, directory: Path, base_offset: int, config: LogConfig, created_ms: int, file_suffix: str = ""
    ) -> LogSegment:
        """A new, empty segment (any stale files with its name are emptied).

        ``file_suffix`` follows each file name: the cleaner writes a segment under ".cleaned" names first.
        """
        return cls(directory, base_offset, config, created_ms, create_new=True, file_suffix=file_suffix)

    @classmethod
    def open(cls, directory: Path, base_offset: int, config: LogConfig, created_ms: int) -> LogSegment:
        """An existing segment; call :meth:`load` or :meth:`recover` before using it."""
        return cls(directory, base_offset, config, created_ms)

    # Loading and recovery

    def load(self) -> bool:
        """Trust the files: read both indexes, walk the headers after the last index entry.

        Returns False when an index is missing or inconsistent or the tail is
        not whole batches; the caller then runs :meth:`recover`.
        """
        if not (self.offset_index.load(self.size_bytes) and self.time_index.load()):
            return False
        try:
            self.next_offset = self._walk_to_end()
        except CorruptRecordError:
            return False
        last_time_entry = self.time_index.last_entry()
        if last_time_entry is None:
            return self.size_bytes == 0  # sealing records a max timestamp, so a lost one means a lost index
        if last_time_entry.offset >= self.next_offset:
            return False
        self.max_timestamp_ms, self.offset_of_max_timestamp = last_time_entry
        return True

    def _walk_to_end(self) -> int:
        """The next offset after the last batch, walking the headers from the last index entry."""
        entry = self.offset_index.last_entry()
        expected_offset = entry.offset
        for position, header in self.batch_headers(entry.position):
            if self._breaks_sequence(header, expected_offset):
                raise CorruptRecordError(f"{self.log_path}: batch at byte {position} breaks the offset sequence")
            expected_offset = header.next_offset
        return expected_offset

    def _breaks_sequence(self, header: BatchHeader, expected_offset: int) -> bool:
        """Whether a batch cannot follow a batch that ended before ``expected_offset``: offsets go back,
        or skip in a log that is not compacted (offsets lie outside the CRC, so this is checked)."""
        if self._allow_gaps:
            return header.base_offset < expected_offset
        return header.base_offset != expected_offset

    def continues_into(self, next_base_offset: int) -> bool:
        """Whether the segment with base ``next_base_offset`` may follow this one (no overlap, no gap
        unless compacted)."""
        if self._allow_gaps:
            return self.next_offset <= next_base_offset
        return self.next_offset == next_base_offset

    def recover(self, on_batch: Callable[[BatchHeader], None] | None = None) -> int:
        """Rebuild the indexes from a CRC-checked scan; cut the file at the first bad batch.

        A batch is bad when it is torn, fails check_batch, or its base offset
        breaks the sequence (offsets lie outside the CRC). ``on_batch`` sees
        every good header in order (the leader epoch cache uses it). Returns
        the number of bytes cut off.
        """
        self._reset_to_empty_indexes()
        valid_bytes = 0
        for position, header in self._valid_batches():
            if self._breaks_sequence(header, self.next_offset) or header.last_offset - self.base_offset > INT32_MAX:
                break
            self._index_batch(position, header)
            valid_bytes = position + header.size
            if on_batch is not None:
                on_batch(header)
        truncated_bytes = self.size_bytes - valid_bytes
        if truncated_bytes:
            os.ftruncate(self._descriptor, valid_bytes)
            self.size_bytes = valid_bytes
            self._unflushed = True
        return truncated_bytes

    def _reset_to_empty_indexes(self) -> None:
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp_ms = NO_TIMESTAMP
        self.offset_of_max_timestamp = self.base_offset
        self._bytes_since_last_index_entry = 0

    def _valid_batches(self) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch that passes check_batch, stopping quietly at the first that fails."""
        position = 0
        try:
            while position < self.size_bytes:
                chunk = self._whole_batches_at(position)
                for position_in_chunk, header in iter_batches(chunk):
                    yield position + position_in_chunk, header
                position += len(chunk)
        except CorruptRecordError:
            return

    def _whole_batches_at(self, position: int) -> memoryview:
        """At least one whole batch starting at ``position``; CorruptRecordError when the file ends inside it."""
        chunk = os.pread(self._descriptor, min(RECOVERY_CHUNK_BYTES, self.size_bytes - position), position)
        whole_bytes = complete_prefix(chunk)
        if whole_bytes == 0:
            header = read_header(chunk)
            if header.batch_length < MINIMUM_BATCH_LENGTH or position + header.size > self.size_bytes:
                raise CorruptRecordError(f"{self.log_path}: torn batch at byte {position}")
            chunk = os.pread(self._descriptor, header.size, position)
            whole_bytes = len(chunk)
        return memoryview(chunk)[:whole_bytes]

    # Appending

    def append(self, headers: Sequence[BatchHeader], buffers: Sequence[bytes | memoryview]) -> None:
        """Write batches that already carry their final offsets; ``buffers`` concatenate to exactly them.

        On a write error (of the log or of an index entry) the file and both
        indexes are cut back to where they were, so no torn batch stays
        behind and no index entry points at a batch that was not appended;
        the error propagates.
        """
        position = self.size_bytes
        before = self._append_state()
        self._unflushed = True
        try:
            written_bytes = write_fully(self._descriptor, buffers)
            for header in headers:
                assert header.base_offset >= self.next_offset, (header.base_offset, self.next_offset)
                self._index_batch(position, header)
                position += header.size
        except OSError:
            self._undo_append(before)
            raise
        assert position - self.size_bytes == written_bytes, "buffers and headers disagree on the size"
        self._remember(self.size_bytes, headers)
        self.size_bytes = position

    def _remember(self, position: int, headers: Sequence[BatchHeader]) -> None:
        """Note where the appended batches start, keeping the last RECENT_BATCHES_MAX."""
        recent = self._recent_batches
        for header in headers:
            recent[header.base_offset] = (position, header)
            position += header.size
        while len(recent) > RECENT_BATCHES_MAX:
            del recent[next(iter(recent))]

    def _append_state(self) -> tuple[int, ...]:
        return (self.size_bytes, self.next_offset, self.max_timestamp_ms, self.offset_of_max_timestamp,
                self._bytes_since_last_index_entry, self.offset_index.entry_count, self.time_index.entry_count)

    def _undo_append(self, before: tuple[int, ...]) -> None:
        """Back to the state :meth:`_append_state` saved: the log file first, so nothing points past its end."""
        (size_bytes, self.next_offset, self.max_timestamp_ms, self.offset_of_max_timestamp,
         self._bytes_since_last_index_entry, offset_entries, time_entries) = before
        os.ftruncate(self._descriptor, size_bytes)
        if self.offset_index.entry_count != offset_entries:
            self.offset_index.truncate_to_entries(offset_entries)
        if self.time_index.entry_count != time_entries:
            self.time_index.truncate_to_entries(time_entries)

    def _index_batch(self, position: int, header: BatchHeader) -> None:
        if header.max_timestamp > self.max_timestamp_ms:
            self.max_timestamp_ms = header.max_timestamp
            self.offset_of_max_timestamp = header.base_offset
        if self._bytes_since_last_index_entry > self._index_interval_bytes:
            self.offset_index.append(header.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp)
            self._bytes_since_last_index_entry = 0
        self._bytes_since_last_index_entry += header.size
        self.next_offset = header.next_offset

    def index_would_overflow(self, batch_count: int) -> bool:
        """Whether ``batch_count`` more batches could fill either index past segment.index.bytes."""
        return (
            self.offset_index.entry_count + batch_count > self.offset_index.max_entries
            or self.time_index.entry_count + batch_count > self.time_index.max_entries
        )

    def seal(self) -> None:
        """Record the max timestamp in the time index, when the segment stops being active or closes."""
        if self.size_bytes:
            self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp)

    # Reading

    def batch_headers(self, start_position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from ``start_position`` (a batch boundary), reading headers only.

        Reads WALK_CHUNK_BYTES at a time and parses every header that fits in
        the chunk, so a walk over small batches costs one pread per chunk.
        Raises CorruptRecordError if a header is malformed or the file ends
        inside a batch.
        """
        position = start_position
        while position < self.size_bytes:
            chunk = os.pread(self._descriptor, min(WALK_CHUNK_BYTES, self.size_bytes - position), position)
            position_in_chunk = 0
            while len(chunk) - position_in_chunk >= HEADER_SIZE:
                header = read_header(chunk, position_in_chunk)
                self._check_header(position + position_in_chunk, header)
                yield position + position_in_chunk, header
                position_in_chunk += header.size
            if position_in_chunk == 0:
                raise CorruptRecordError(f"{self.log_path}: header torn at byte {position}")
            position += position_in_chunk

    def _check_header(self, position: int, header: BatchHeader) -> None:
        if header.magic != MAGIC or header.batch_length < MINIMUM_BATCH_LENGTH:
            raise CorruptRecordError(f"{self.log_path}: no batch header at byte {position}")
        if position + header.size > self.size_bytes:
            raise CorruptRecordError(f"{self.log_path}: batch at byte {position} runs past the end")

    def translate_offset(self, offset: int) -> tuple[int, BatchHeader] | None:
        """Position and header of the batch holding ``offset``, or the first after it when ``offset`` was
        compacted away: a recently appended batch's base offset is looked up directly, any other offset with the
        index and a header walk. None when no batch ends after ``offset``."""
        recent = self._recent_batches.get(offset)
        if recent is not None:
            return recent
        start_position = self.offset_index.lookup(offset).position
        for position, header in self.batch_headers(start_position):
            if header.next_offset > offset:
                return position, header
        return None

    def checked_batches(self) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Every batch, CRC-checked, with its bytes, read in large pieces (for the cleaner).

        Raises CorruptRecordError at a bad batch.
        """
        position = 0
        while position < self.size_bytes:
            chunk = self._whole_batches_at(position)
            for position_in_chunk, header in iter_batches(chunk):
                yield header, chunk[position_in_chunk : position_in_chunk + header.size]
            position += len(chunk)

    def read(self, start_position: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` from ``start_position``, one pread."""
        return os.pread(self._descriptor, min(max_bytes, self.size_bytes - start_position), start_position)

    def read_batches(self, offset: int, max_bytes: int, max_offset: int) -> bytes | memoryview:
        """Whole batches from the one holding ``offset``, within ``max_bytes`` but at least one (KIP-74).

        No batch whose base offset is ``max_offset`` or more is included.
        Empty when the segment has no batch holding ``offset`` or after it.
        A read that ends inside a batch is cut back to the last whole one as a view of the read, not a copy
        (a fetch of 1 MB per partition mostly ends inside one): the caller may keep it as long as it likes.
        """
        located = self.translate_offset(offset)
        if located is None or located[1].base_offset >= max_offset:
            return b""
        position, header = located
        end_position = self._end_position_before(max_offset)
        data = self.read(position, max(header.size, min(max_bytes, end_position - position)))
        whole_bytes = complete_prefix(data)
        return data if whole_bytes == len(data) else memoryview(data)[:whole_bytes]

    def _end_position_before(self, max_offset: int) -> int:
        """Where the first batch with base offset ``max_offset`` or more starts (the file end if none)."""
        if max_offset >= self.next_offset:
            return self.size_bytes
        position, header = self.translate_offset(max_offset)  # type: ignore[misc]
        return position if header.base_offset >= max_offset else position + header.size

    def find_offset_by_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record stamped ``timestamp_ms`` or later, or None."""
        start_offset = self.time_index.lookup(timestamp_ms)
        start_position = self.offset_index.lookup(start_offset).position
        for position, header in self.batch_headers(start_position):
            if header.max_timestamp >= timestamp_ms:
                return self._first_record_at_or_after(position, header, timestamp_ms)
        return None

    def _first_record_at_or_after(self, position: int, header: BatchHeader, timestamp_ms: int) -> tuple[int, int]:
        batch = self.read(position, header.size)
        check_batch(batch)
        _, _, timestamps, _ = decode_payload(header, memoryview(batch)[HEADER_SIZE:])
        record_index = list(map(timestamp_ms.__le__, timestamps)).index(True)
        return header.base_offset + record_index, timestamps[record_index]

    # Truncation and lifecycle

    def truncate_to(self, offset: int) -> int:
        """Cut the segment at the start of the batch holding ``offset`` (or the first after it, in a gap);
        return the bytes removed. The next offset becomes the end of the last batch kept."""
        located = self.translate_offset(offset)
        if located is None:
            return 0
        position, header = located
        self._recent_batches.clear()
        self.offset_index.truncate_to(header.base_offset)
        self.time_index.truncate_to(header.base_offset)
        os.ftruncate(self._descriptor, position)
        self._unflushed = True
        truncated_bytes = self.size_bytes - position
        self.size_bytes = position
        self.next_offset = self._walk_to_end()
        self._bytes_since_last_index_entry = 0
        self._recompute_max_timestamp()
        return truncated_bytes

    def _recompute_max_timestamp(self) -> None:
        """The time index covers batches up to its last entry; walk the batches after it."""
        last_time_entry = self.time_index.last_entry()
        if last_time_entry is None:
            self.max_timestamp_ms, self.offset_of_max_timestamp = NO_TIMESTAMP, self.base_offset
        else:
            self.max_timestamp_ms, self.offset_of_max_timestamp = last_time_entry
        start_position = self.offset_index.lookup(self.offset_of_max_timestamp).position
        for _, header in self.batch_headers(start_position):
            if header.max_timestamp > self.max_timestamp_ms:
                self.max_timestamp_ms, self.offset_of_max_timestamp = header.max_timestamp, header.base_offset

    def flush(self) -> None:
        """fsync whichever of the log and the indexes changed since the last flush, the log first."""
        if self._unflushed:
            os.fsync(self._descriptor)
            self._unflushed = False
        self.offset_index.flush()
        self.time_index.flush()

    def take_unflushed(self) -> list[int]:
        """New descriptors of the files changed since the last flush, the log first, for a flush on
        another thread; they count as flushed from now on. The caller fsyncs and closes them.

        Appends may go on meanwhile: an fsync of the duplicate covers what was written before it.
        """
        descriptors = []
        if self._unflushed:
            self._unflushed = False
            descriptors.append(os.dup(self._descriptor))
        for index in (self.offset_index, self.time_index):
            descriptor = index.duplicate_if_dirty()
            if descriptor is not None:
                descriptors.append(descriptor)
        return descriptors

    def file_paths(self) -> tuple[Path, Path, Path]:
        """The .log, .index and .timeindex files."""
        return self.log_path, self.offset_index.path, self.time_index.path

    def rename_for_deletion(self) -> list[Path]:
        """Close the segment and rename its files with DELETED_SUFFIX (cheap); return the new paths, to
        unlink on another thread. A crash before that leaves files the loader removes."""
        self.close()
        renamed = []
        for path in self.file_paths():
            target = path.with_name(path.name + DELETED_SUFFIX)
            try:
                os.replace(path, target)
            except FileNotFoundError:
                continue
            renamed.append(target)
        return renamed

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
        self.offset_index.close()
        self.time_index.close()

    def delete(self) -> None:
        self.close()
        self.log_path.unlink(missing_ok=True)
        self.offset_index.delete()
        self.time_index.delete()

    def __repr__(self) -> str:
        return (
            f"LogSegment(base_offset={self.base_offset}, next_offset={self.next_offset}, "
            f"size_bytes={self.size_bytes})"
        )
