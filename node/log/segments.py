"""The ordered set of a partition's segments, found by offset with bisect."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterator

from rill.node.log.segment import LogSegment


class LogSegments:
    """A partition's segments in base-offset order; the last one is the active segment.

    Invariants: base offsets strictly increase; once loaded, each segment's
    next offset is the next segment's base offset (no gaps; in a compacted
    log at most it), and there is always at least one segment.

    Not thread-safe: the owning Log is used from one thread.
    """

    def __init__(self) -> None:
        self._segments: list[LogSegment] = []
        self._base_offsets: list[int] = []

    def add(self, segment: LogSegment) -> None:
        assert not self._base_offsets or segment.base_offset > self._base_offsets[-1], "segments must be added in order"
        self._segments.append(segment)
        self._base_offsets.append(segment.base_offset)

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[LogSegment]:
        return iter(self._segments)

    @property
    def first(self) -> LogSegment:
        return self._segments[0]

    @property
    def active(self) -> LogSegment:
        return self._segments[-1]

    def inactive(self) -> list[LogSegment]:
        """Every segment but the active one, oldest first."""
        return self._segments[:-1]

    def floor(self, offset: int) -> LogSegment | None:
        """The segment with the largest base offset at or below ``offset``."""
        slot = bisect_right(self._base_offsets, offset) - 1
        return self._segments[slot] if slot >= 0 else None

    def starting_at(self, offset: int) -> list[LogSegment]:
        """The segment holding ``offset`` (the floor) and every later one."""
        return self._segments[max(bisect_right(self._base_offsets, offset) - 1, 0) :]

    def replace(self, segment: LogSegment) -> LogSegment:
        """Put ``segment`` in the place of the one with its base offset; return the one it replaces."""
        slot = self._slot_of(segment.base_offset)
        replaced, self._segments[slot] = self._segments[slot], segment
        return replaced

    def remove(self, segment: LogSegment) -> None:
        """Take out a segment that is neither the first nor the active one (the cleaner emptied it)."""
        slot = self._slot_of(segment.base_offset)
        assert 0 < slot < len(self._segments) - 1, "the first and the active segment stay"
        del self._segments[slot]
        del self._base_offsets[slot]

    def _slot_of(self, base_offset: int) -> int:
        slot = bisect_left(self._base_offsets, base_offset)
        assert self._base_offsets[slot] == base_offset, base_offset
        return slot

    def remove_first(self) -> LogSegment:
        del self._base_offsets[0]
        return self._segments.pop(0)

    def remove_after(self, offset: int) -> list[LogSegment]:
        """Take out and return the segments whose base offset is above ``offset``."""
        slot = bisect_right(self._base_offsets, offset)
        removed = self._segments[slot:]
        del self._segments[slot:]
        del self._base_offsets[slot:]
        return removed

    def remove_all(self) -> list[LogSegment]:
        removed = self._segments
        self._segments, self._base_offsets = [], []
        return removed

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self._segments)
