"""A file of fixed-size entries that only grows at its end or is cut back: the storage of both indexes."""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from itertools import islice
from operator import lt
from pathlib import Path

from rill.node.log.files import open_for_append, write_fully


PENDING_BYTES_MAX = 4096  # appended entries kept in memory before they are written


class EntryFile:
    """The on-disk half of an index: ``entry_size_bytes`` records appended in order.

    It holds no file descriptor between calls. A broker hosts thousands of
    partitions, and keeping both index files of every segment open cost two
    descriptors per partition besides its log (10,000 partitions needed
    30,000, over a common limit of 20,000). Appended entries wait in memory
    (at most PENDING_BYTES_MAX) and are written with one open, write and
    close when that fills, before a read, a cut or a flush, and at close.
    Entries not written yet are lost in a crash together with the unflushed
    log they index, and recovery rebuilds the indexes from the recovery
    point on (docs/architecture.md, 8.3). ``flush`` fsyncs only when
    something changed since the last flush. ``existed`` records whether the
    file was there before this object opened (or created) it, so a missing
    index is rebuilt rather than trusted as empty. Not thread-safe: its
    owning segment is used from one thread.
    """

    def __init__(self, path: Path, entry_size_bytes: int, create_new: bool = False) -> None:
        self.path = path
        self.entry_size_bytes = entry_size_bytes
        self.existed = path.exists() and not create_new
        descriptor = open_for_append(path, truncate=create_new)
        try:
            self._written_bytes = os.fstat(descriptor).st_size  # what the file holds
        finally:
            os.close(descriptor)
        self._pending = bytearray()
        self._dirty = create_new

    def read_all(self) -> bytes | None:
        """Every byte of the file, or None when its length is not a whole number of entries."""
        self._write_pending()
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            size_bytes = os.fstat(descriptor).st_size
            if size_bytes % self.entry_size_bytes:
                return None
            return os.pread(descriptor, size_bytes, 0)
        finally:
            os.close(descriptor)

    def append(self, entry: bytes) -> None:
        assert len(entry) == self.entry_size_bytes
        self._pending += entry
        self._dirty = True
        if len(self._pending) >= PENDING_BYTES_MAX:
            self._write_pending()

    def _write_pending(self) -> None:
        """Write the waiting entries; if that fails (a full disk) the file is cut back to what it held and
        the entries keep waiting, so the file never holds part of an entry or one a cut took back."""
        if not self._pending:
            return
        descriptor = open_for_append(self.path)
        try:
            write_fully(descriptor, [self._pending])
        except OSError:
            os.ftruncate(descriptor, self._written_bytes)
            raise
        finally:
            os.close(descriptor)
        self._written_bytes += len(self._pending)
        self._pending = bytearray()

    def truncate_to_entries(self, entry_count: int) -> None:
        """Keep the first ``entry_count`` entries: a cut among the waiting ones touches no file."""
        size_bytes = entry_count * self.entry_size_bytes
        if size_bytes >= self._written_bytes:
            del self._pending[size_bytes - self._written_bytes:]
        else:
            self._pending = bytearray()
            descriptor = open_for_append(self.path)
            try:
                os.ftruncate(descriptor, size_bytes)
            finally:
                os.close(descriptor)
            self._written_bytes = size_bytes
        self._dirty = True

    def flush(self) -> None:
        descriptor = self.duplicate_if_dirty()
        if descriptor is not None:
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def duplicate_if_dirty(self) -> int | None:
        """A descriptor of the file, for a flush on another thread, if it changed since the last flush
        (which this counts as); None otherwise. The caller fsyncs and closes it."""
        if not self._dirty:
            return None
        self._write_pending()
        self._dirty = False
        return open_for_append(self.path)

    def close(self) -> None:
        """Write what waits in memory; nothing stays open, so closing twice (or using it again) is harmless."""
        self._write_pending()

    def delete(self) -> None:
        self._pending = bytearray()
        self.path.unlink(missing_ok=True)


def strictly_increasing(column: array) -> bool:
    """Whether each value of an index column is larger than the one before (an index invariant)."""
    return all(map(lt, column, islice(column, 1, None)))


class SparseIndex:
    """What the offset index and the time index share: a base offset, an EntryFile, and columns of
    which ``_relative_offsets`` is sorted, truncated together. Subclasses name their columns."""

    def __init__(self, path: Path, base_offset: int, entry_size_bytes: int, max_size_bytes: int,
                 create_new: bool) -> None:
        self.base_offset = base_offset
        self.max_entries = max_size_bytes // entry_size_bytes
        self._file = EntryFile(path, entry_size_bytes, create_new)
        self._relative_offsets = array("i")

    def _columns(self) -> tuple[array, ...]:
        raise NotImplementedError

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def entry_count(self) -> int:
        return len(self._relative_offsets)

    def truncate_to(self, offset: int) -> None:
        """Drop every entry for ``offset`` and above."""
        self.truncate_to_entries(bisect_left(self._relative_offsets, offset - self.base_offset))

    def truncate_to_entries(self, entry_count: int) -> None:
        """Keep the first ``entry_count`` entries (undoing the entries of a failed append)."""
        for column in self._columns():
            del column[entry_count:]
        self._file.truncate_to_entries(entry_count)

    def reset(self) -> None:
        self.truncate_to(self.base_offset)

    def flush(self) -> None:
        self._file.flush()

    def duplicate_if_dirty(self) -> int | None:
        return self._file.duplicate_if_dirty()

    def close(self) -> None:
        self._file.close()

    def delete(self) -> None:
        self._file.delete()
