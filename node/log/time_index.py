"""The sparse time index of one segment: max timestamp so far -> offset of the batch that reached it."""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import NamedTuple

from rill.node.log.entry_file import SparseIndex, strictly_increasing

ENTRY = struct.Struct(">qi")  # timestamp ms, relative offset
INT32_MAX = 2**31 - 1


class TimeEntry(NamedTuple):
    """No batch before the one at base ``offset`` holds a record with a timestamp of ``timestamp_ms`` or more."""

    timestamp_ms: int
    offset: int


class TimeIndex(SparseIndex):
    """Sparse index from timestamp to offset, for one segment.

    On disk, ``<base offset, 20 digits>.timeindex``: 12-byte big-endian
    entries (timestamp ms i64, offset minus the segment's base offset i32).
    An entry (T, O) says that T is the largest timestamp among the batches up
    to the one with base offset O, and that O is the first batch to reach it.
    Entries are appended only when the segment's max timestamp has grown:
    at each offset index entry, when the segment stops being active and on
    close, so the last entry holds the segment's max timestamp.

    Invariants: timestamps and offsets both strictly increase. Rebuilt from
    the log when missing or inconsistent.

    Not thread-safe: the owning segment is used from one thread.
    """

    def __init__(self, path: Path, base_offset: int, max_size_bytes: int, create_new: bool = False) -> None:
        super().__init__(path, base_offset, ENTRY.size, max_size_bytes, create_new)
        self._timestamps_ms = array("q")

    def _columns(self) -> tuple[array, ...]:
        return self._timestamps_ms, self._relative_offsets



    def load(self) -> bool:
        """Read the entries from disk; False (and empty) when the file is missing or inconsistent."""
        data = self._file.read_all() if self._file.existed else None
        if data is None:
            return False
        columns = tuple(zip(*ENTRY.iter_unpack(data))) or ((), ())
        self._timestamps_ms = array("q", columns[0])
        self._relative_offsets = array("i", columns[1])
        if self._is_consistent():
            return True
        self._timestamps_ms, self._relative_offsets = array("q"), array("i")
        return False

    def _is_consistent(self) -> bool:
        if not self._timestamps_ms:
            return True
        return (
            self._relative_offsets[0] >= 0
            and strictly_increasing(self._timestamps_ms)
            and strictly_increasing(self._relative_offsets)
        )

    def maybe_append(self, timestamp_ms: int, offset: int) -> None:
        """Append (timestamp, offset) if the timestamp is newer than the last entry's."""
        if self._timestamps_ms and timestamp_ms <= self._timestamps_ms[-1]:
            return
        relative_offset = offset - self.base_offset
        assert 0 <= relative_offset <= INT32_MAX, offset
        assert not self._relative_offsets or relative_offset > self._relative_offsets[-1], (
            "time index offsets must strictly increase"
        )
        self._file.append(ENTRY.pack(timestamp_ms, relative_offset))
        self._timestamps_ms.append(timestamp_ms)
        self._relative_offsets.append(relative_offset)

    def lookup(self, timestamp_ms: int) -> int:
        """The offset from which to search for ``timestamp_ms``: no earlier batch reaches it."""
        slot = bisect_right(self._timestamps_ms, timestamp_ms) - 1
        if slot < 0:
            return self.base_offset
        return self.base_offset + self._relative_offsets[slot]

    def last_entry(self) -> TimeEntry | None:
        if not self._timestamps_ms:
            return None
        return TimeEntry(self._timestamps_ms[-1], self.base_offset + self._relative_offsets[-1])





