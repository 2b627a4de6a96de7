"""Which leader epoch began at which offset (Kafka KIP-101), persisted in leader-epoch-checkpoint."""

from __future__ import annotations

import threading
from bisect import bisect_right
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from rill.node.log.files import read_text_or_none, write_atomically

FILE_NAME = "leader-epoch-checkpoint"
CHECKPOINT_VERSION = 0
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class EpochEntry(NamedTuple):
    """Leader epoch ``epoch`` wrote its first batch at ``start_offset``."""

    epoch: int
    start_offset: int


class LeaderEpochCache:
    """The start offset of each leader epoch seen in one partition's log.

    On disk, ``leader-epoch-checkpoint`` in the partition directory, Kafka's
    checkpoint text format: a line with the version (0), a line with the
    number of entries, then one ``<epoch> <start offset>`` line per entry.
    The file is rewritten atomically on every change; epochs change rarely.

    Invariants: epochs and start offsets both strictly increase. Assigning
    an entry that would break this first removes the entries it conflicts
    with, as Kafka's LeaderEpochFileCache does.

    Not thread-safe, but for :meth:`write`: the owning Log is used from one
    thread, and may leave a truncation's write (``persist=False``) to the
    disk executor. A crash before that write leaves entries the loader cuts
    to the recovered log, as it does after any crash.
    """

    def __init__(self, path: Path, entries: list[EpochEntry] | None = None) -> None:
        self.path = path
        self._entries: list[EpochEntry] = list(entries or ())
        self._write_lock = threading.Lock()

    @classmethod
    def read(cls, path: Path) -> LeaderEpochCache | None:
        """The cache stored at ``path``, or None when the file is missing or unreadable."""
        entries = _parse(read_text_or_none(path))
        return None if entries is None else cls(path, entries)

    @property
    def entries(self) -> tuple[EpochEntry, ...]:
        return tuple(self._entries)

    @property
    def latest_epoch(self) -> int | None:
        return self._entries[-1].epoch if self._entries else None

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that ``epoch`` starts at ``start_offset``; a no-op when it is already the latest epoch."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        if self._entries:
            latest = self._entries[-1]
            if epoch == latest.epoch and start_offset >= latest.start_offset:
                return
        while self._entries and (self._entries[-1].epoch >= epoch or self._entries[-1].start_offset >= start_offset):
            self._entries.pop()
        self._entries.append(EpochEntry(epoch, start_offset))
        self.write()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) as Kafka's LeaderEpochFileCache.endOffsetFor defines them.

        The end offset of an epoch is the start offset of the first larger
        epoch, or the log end offset for the latest epoch. The epoch returned
        is the largest known one at or below ``epoch``; for an epoch older
        than every known one, ``epoch`` itself with the first known start
        offset. Unknown (epoch -1, or newer than all): (-1, -1).
        """
        if epoch == UNDEFINED_EPOCH:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch == self.latest_epoch:
            return epoch, log_end_offset
        higher = bisect_right(self._entries, epoch, key=attrgetter("epoch"))
        if higher == len(self._entries):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return epoch, self._entries[0].start_offset
        return self._entries[higher - 1].epoch, self._entries[higher].start_offset

    def truncate_from_end(self, end_offset: int, persist: bool = True) -> bool:
        """Forget the epochs that start at ``end_offset`` or later (the log was truncated there); say whether
        any went. ``persist=False`` leaves writing the file to the caller."""
        if not self._entries or self._entries[-1].start_offset < end_offset:
            return False
        while self._entries and self._entries[-1].start_offset >= end_offset:
            self._entries.pop()
        if persist:
            self.write()
        return True

    def truncate_from_start(self, start_offset: int, persist: bool = True) -> bool:
        """Forget the epochs wholly before ``start_offset``; the one holding it now starts there. Says whether
        anything changed; ``persist=False`` leaves writing the file to the caller."""
        removed = 0
        while removed < len(self._entries) and self._entries[removed].start_offset <= start_offset:
            removed += 1
        if removed == 0 or (removed == 1 and self._entries[0].start_offset == start_offset):
            return False
        first = EpochEntry(self._entries[removed - 1].epoch, start_offset)
        self._entries[:removed] = [first]
        if persist:
            self.write()
        return True

    def clear(self) -> None:
        self._entries.clear()
        self.write()

    def write(self) -> None:
        """Store the entries as they are now; writes from two threads take turns, and each stores the then
        newest entries, so the last one leaves the file current."""
        with self._write_lock:
            entries = list(self._entries)
            lines = [str(CHECKPOINT_VERSION), str(len(entries))]
            lines.extend(f"{entry.epoch} {entry.start_offset}" for entry in entries)
            write_atomically(self.path, ("\n".join(lines) + "\n").encode())


def _parse(text: str | None) -> list[EpochEntry] | None:
    if text is None:
        return None
    lines = text.split("\n")
    try:
        version, count = int(lines[0]), int(lines[1])
        entries = [EpochEntry(*map(int, line.split(" "))) for line in lines[2 : 2 + count]]
    except (ValueError, TypeError, IndexError):
        return None
    if version != CHECKPOINT_VERSION or len(entries) != count or not _monotonic(entries):
        return None
    return entries


def _monotonic(entries: list[EpochEntry]) -> bool:
    if entries and (entries[0].epoch < 0 or entries[0].start_offset < 0):
        return False
    return all(
        earlier.epoch < later.epoch and earlier.start_offset < later.start_offset
        for earlier, later in zip(entries, entries[1:])
    )
