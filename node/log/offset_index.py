"""The sparse offset index of one segment: offset -> byte position of a batch in the .log file."""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import NamedTuple

from rill.node.log.entry_file import SparseIndex, strictly_increasing

ENTRY = struct.Struct(">ii")  # relative offset, file position
INT32_MAX = 2**31 - 1
_LITTLE_ENDIAN = sys.byteorder == "little"


class IndexEntry(NamedTuple):
    """One offset index entry: the batch with base ``offset`` starts at byte ``position``."""

    offset: int
    position: int


class OffsetIndex(SparseIndex):
    """Sparse index from offset to file position, for one segment.

    On disk, ``<base offset, 20 digits>.index``: 8-byte big-endian entries
    (offset minus the segment's base offset as i32, byte position of the
    batch in the .log file as i32), appended as batches are written, one
    per ``index_interval_bytes`` of log. In memory, two ``array`` columns
    searched with ``bisect``.

    Invariants: relative offsets and positions both strictly increase, and
    every entry names the first byte of a batch whose base offset it holds.
    The index is an accelerator, not a source of truth: when it is missing
    or breaks these rules it is rebuilt from the log.

    Not thread-safe: the owning segment is used from one thread.
    """

    def __init__(self, path: Path, base_offset: int, max_size_bytes: int, create_new: bool = False) -> None:
        super().__init__(path, base_offset, ENTRY.size, max_size_bytes, create_new)
        self._positions = array("i")

    def _columns(self) -> tuple[array, ...]:
        return self._relative_offsets, self._positions



    def load(self, log_size_bytes: int) -> bool:
        """Read the entries from disk; False (and empty) when the file is missing or inconsistent."""
        data = self._file.read_all() if self._file.existed else None
        if data is None:
            return False
        interleaved = array("i", data)
        if _LITTLE_ENDIAN:
            interleaved.byteswap()
        self._relative_offsets = interleaved[0::2]
        self._positions = interleaved[1::2]
        if self._is_consistent(log_size_bytes):
            return True
        self._relative_offsets, self._positions = array("i"), array("i")
        return False

    def _is_consistent(self, log_size_bytes: int) -> bool:
        if not self._positions:
            return True
        return (
            self._relative_offsets[0] >= 0
            and self._positions[0] >= 0
            and self._positions[-1] < log_size_bytes
            and strictly_increasing(self._relative_offsets)
            and strictly_increasing(self._positions)
        )

    def append(self, offset: int, position: int) -> None:
        relative_offset = offset - self.base_offset
        assert 0 <= relative_offset <= INT32_MAX and 0 <= position <= INT32_MAX, (offset, position)
        assert not self._positions or (
            relative_offset > self._relative_offsets[-1] and position > self._positions[-1]
        ), "offset index entries must strictly increase"
        self._file.append(ENTRY.pack(relative_offset, position))
        self._relative_offsets.append(relative_offset)
        self._positions.append(position)

    def lookup(self, offset: int) -> IndexEntry:
        """The last entry at or below ``offset``, or (base offset, 0) when there is none."""
        slot = bisect_right(self._relative_offsets, offset - self.base_offset) - 1
        if slot < 0:
            return IndexEntry(self.base_offset, 0)
        return IndexEntry(self.base_offset + self._relative_offsets[slot], self._positions[slot])

    def last_entry(self) -> IndexEntry:
        if not self._positions:
            return IndexEntry(self.base_offset, 0)
        return IndexEntry(self.base_offset + self._relative_offsets[-1], self._positions[-1])





