"""A file of fixed-size entries that only grows at its end or is cut back: the storage of both indexes."""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from itertools import islice
from operator import lt
from pathlib import Path

from rill.node.log.files import open_for_append, write_fully


class EntryFile:
    """The on-disk half of an index: ``entry_size_bytes`` records appended in order.

    Appends go through an O_APPEND descriptor; ``flush`` fsyncs only when
    something changed since the last flush. ``existed`` records whether the
    file was there before this object opened (or created) it, so a missing
    index is rebuilt rather than trusted as empty. Not thread-safe: its
    owning segment is used from one thread.
    """

    def __init__(self, path: Path, entry_size_bytes: int, create_new: bool = False) -> None:
        self.path = path
        self.entry_size_bytes = entry_size_bytes
        self.existed = path.exists() and not create_new
        self._descriptor = open_for_append(path, truncate=create_new)
        self._dirty = create_new

    def read_all(self) -> bytes | None:
        """Every byte of the file, or None when its length is not a whole number of entries."""
        size_bytes = os.fstat(self._descriptor).st_size
        if size_bytes % self.entry_size_bytes:
            return None
        return os.pread(self._descriptor, size_bytes, 0)

    def append(self, entry: bytes) -> None:
        assert len(entry) == self.entry_size_bytes
        write_fully(self._descriptor, [entry])
        self._dirty = True

    def truncate_to_entries(self, entry_count: int) -> None:
        os.ftruncate(self._descriptor, entry_count * self.entry_size_bytes)
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            os.fsync(self._descriptor)
            self._dirty = False

    def duplicate_if_dirty(self) -> int | None:
        """A new descriptor of the file, for a flush on another thread, if it changed since the last flush
        (which this counts as); None otherwise. The caller fsyncs and closes it."""
        if not self._dirty:
            return None
        self._dirty = False
        return os.dup(self._descriptor)

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1

    def delete(self) -> None:
        self.close()
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
