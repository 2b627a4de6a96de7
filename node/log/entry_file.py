"""A file of fixed-size entries that only grows at its end or is cut back: the storage of both indexes."""

from __future__ import annotations

import os
from array import array
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
