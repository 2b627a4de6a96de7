"""Idempotent producers on one partition replica: who wrote what, so a retried batch is stored once.

Kafka's ProducerStateManager (KIP-98), without transactions. For each
producer id that wrote to the partition it keeps the epoch, when this
replica last saw a batch of it, and the metadata of the producer's latest
MAX_CACHED_BATCHES batches (first and last sequence, first and last
offset): a producer has at most that many requests in flight, so a retry
is always of one of them.

A leader checks a producer's batches before appending them (``check_append``):

- an epoch older than the one stored: InvalidProducerEpochError;
- a batch equal to a cached one (same epoch, first and last sequence): a
  duplicate, not appended; the append answers with the original offsets;
- a newer epoch must start at sequence 0 (else OutOfOrderSequenceError),
  and so must an unknown producer (else UnknownProducerIdError);
- otherwise the first sequence must follow the last one stored (wrapping
  from 2**31-1 to 0): else OutOfOrderSequenceError.

Every replica, leader or follower, then records the batches it wrote
(``record``), reading headers only, never records; so a new leader already
knows each producer's latest batches.

On disk, in the partition directory: ``<offset, 20 digits>.snapshot``, the
state for the log below that offset, written when a segment rolls (named
like the new segment) and when the log closes; never fsynced: one torn
by a power loss fails its CRC, and an older one (or the log) serves.
Format: a CRC-32C (u32, big-endian) of the rest, then MessagePack of
``[version, [[producer id, epoch, last activity ms, [[first sequence,
last sequence, first offset, last offset], ...]], ...]]``. A snapshot
that fails its CRC or does not decode is ignored (and deleted). Opening a
log, or truncating it, loads the newest good snapshot at or below the log
end and replays batch headers from there; snapshots above the log end are
deleted, and so are those named after no segment but the newest. A
snapshot goes with the segment it is named after (retention, compaction),
so there is at most one more than there are segments.

Bounds: a producer idle for ``expiration_ms`` (Kafka's
producer.id.expiration.ms; activity is this replica's clock when it wrote
the producer's batch, or opened the log) is removed by
``remove_expired``; past ``max_producers`` the least recently written
producer is dropped. Either way its next batch must start a new epoch or
sequence 0 (UnknownProducerIdError otherwise).

Not thread-safe: used by its Log, from one thread (``delete_snapshot``,
which touches only a file, also from the compaction's).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import msgspec
from crc32c import crc32c
from rill.client.batch import BatchHeader
from rill.client.errors import (
    DuplicateSequenceError,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)
from rill.node.log.append_info import NO_TIMESTAMP, AppendInfo
from rill.node.log.files import replace_file
from rill.node.log.segment import DELETED_SUFFIX, parse_base_offset, segment_file_name
from rill.node.log.segments import LogSegments

SEQUENCE_WRAP = 2**31  # sequences run from 0 to 2**31-1, then start at 0 again (Kafka's)
MAX_CACHED_BATCHES = 5  # Kafka's: a producer with at most 5 requests in flight retries only these
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
CHECKSUM = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class ProducerStateSettings:
    """How long an idle producer's state is kept, and how many producers one partition keeps at most."""

    expiration_ms: int = 86_400_000  # Kafka's producer.id.expiration.ms
    max_producers: int = 10_000


class BatchMetadata(NamedTuple):
    """What a replica remembers of one of a producer's batches."""

    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int


class ProducerEntry:
    """One producer's epoch, its latest batches (oldest first; never empty) and when it last wrote."""

    __slots__ = ("epoch", "batches", "last_activity_ms")

    def __init__(self, epoch: int, last_activity_ms: int, batches: Iterable[BatchMetadata] = ()) -> None:
        self.epoch = epoch
        self.batches: deque[BatchMetadata] = deque(batches, maxlen=MAX_CACHED_BATCHES)
        self.last_activity_ms = last_activity_ms

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset

    def find_duplicate(self, epoch: int, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        """The cached batch with these sequences at this epoch, if any."""
        if epoch != self.epoch:
            return None
        for batch in self.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        return None


class _SnapshotProducer(msgspec.Struct, array_like=True):
    producer_id: int
    epoch: int
    last_activity_ms: int
    batches: list[BatchMetadata]


class _Snapshot(msgspec.Struct, array_like=True):
    version: int
    producers: list[_SnapshotProducer]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


def last_sequence_of(header: BatchHeader) -> int:
    """The sequence of a batch's last record (sequences wrap at 2**31)."""
    return (header.base_sequence + header.record_count - 1) % SEQUENCE_WRAP


def snapshot_file_name(offset: int) -> str:
    return segment_file_name(offset, SNAPSHOT_SUFFIX)


class ProducerStateManager:
    """The producer state of one partition replica and its snapshot files (see the module docstring)."""

    def __init__(self, directory: Path, settings: ProducerStateSettings) -> None:
        self.directory = directory
        self.settings = settings
        self._producers: dict[int, ProducerEntry] = {}  # least recently written first

    def __len__(self) -> int:
        return len(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    # ---- appending ---------------------------------------------------------------------------

    def check_append(self, headers: Sequence[BatchHeader]) -> AppendInfo | None:
        """Check a leader's append of ``headers`` (in order) before anything is written.

        Returns None when every batch may be appended, or, when every
        idempotent batch is a duplicate of a cached one (and there is no other
        batch), an AppendInfo with the original offsets: nothing is appended
        then. Raises the producer errors of the module docstring, or
        DuplicateSequenceError for an append mixing duplicates and new batches
        (it could not be answered with one base offset); nothing is written.
        """
        expected: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, last sequence) after earlier batches
        duplicates: list[BatchMetadata] = []
        fresh = False
        for header in headers:
            producer_id = header.producer_id
            if producer_id < 0:
                fresh = True
                continue
            _check_fields(header)
            last_sequence = last_sequence_of(header)
            stored = expected.get(producer_id)
            if stored is None:
                entry = self._producers.get(producer_id)
                if entry is not None:
                    duplicate = entry.find_duplicate(header.producer_epoch, header.base_sequence, last_sequence)
                    if duplicate is not None:
                        duplicates.append(duplicate)
                        continue
                    stored = entry.epoch, entry.last_sequence
            _check_sequence(header, stored)
            expected[producer_id] = header.producer_epoch, last_sequence
            fresh = True
        if not duplicates:
            return None
        if fresh:
            raise DuplicateSequenceError("a produce request mixes batches the partition stored already with new "
                                         "ones; nothing was stored")
        return AppendInfo(duplicates[0].first_offset, max(batch.last_offset for batch in duplicates),
                          NO_TIMESTAMP, 0, 0)

    def record(self, headers: Iterable[BatchHeader], now_ms: int) -> None:
        """Take in batches written to the log (with their final offsets), in log order; others are skipped."""
        producers = self._producers
        max_producers = self.settings.max_producers
        for header in headers:
            producer_id = header.producer_id
            if producer_id < 0:
                continue
            entry = producers.pop(producer_id, None)
            if entry is None or entry.epoch != header.producer_epoch:
                entry = ProducerEntry(header.producer_epoch, now_ms)
            entry.batches.append(BatchMetadata(header.base_sequence, last_sequence_of(header), header.base_offset,
                                               header.base_offset + header.last_offset_delta))
            entry.last_activity_ms = now_ms
            producers[producer_id] = entry
            if len(producers) > max_producers:
                del producers[next(iter(producers))]

    # ---- bounds ------------------------------------------------------------------------------

    def remove_expired(self, now_ms: int) -> int:
        """Forget producers idle for expiration_ms or longer; return how many."""
        deadline_ms = now_ms - self.settings.expiration_ms
        expired = [producer_id for producer_id, entry in self._producers.items()
                   if entry.last_activity_ms <= deadline_ms]
        for producer_id in expired:
            del self._producers[producer_id]
        return len(expired)

    # ---- snapshots and rebuilding ----------------------------------------------------------------

    def write_snapshot(self, offset: int) -> None:
        """Store the state as the snapshot for the log below ``offset``.

        Not fsynced: after a power loss a snapshot may be missing or torn, which
        its CRC shows; the log is then replayed from an older one.
        """
        snapshot = _Snapshot(SNAPSHOT_VERSION, [
            _SnapshotProducer(producer_id, entry.epoch, entry.last_activity_ms, list(entry.batches))
            for producer_id, entry in self._producers.items()
        ])
        body = _ENCODER.encode(snapshot)
        content = CHECKSUM.pack(crc32c(body)) + body
        replace_file(self._path(offset), content)

    def snapshot_offsets(self) -> list[int]:
        """The offsets of the snapshot files, ascending."""
        names = (path.name for path in self.directory.glob("*" + SNAPSHOT_SUFFIX))
        return sorted(offset for offset in (parse_base_offset(name, SNAPSHOT_SUFFIX) for name in names)
                      if offset is not None)

    def load(self, segments: LogSegments, now_ms: int) -> None:
        """Rebuild the state for the log of ``segments``: the newest good snapshot at or below the log end,
        then the batch headers from there to the end (from the log start, without a snapshot).

        Snapshots above the log end, and those that fail their check, are deleted.
        """
        log_end_offset = segments.active.next_offset
        self._producers = {}
        start_offset = segments.first.base_offset
        for offset in reversed(self.snapshot_offsets()):
            if offset > log_end_offset:
                self._path(offset).unlink(missing_ok=True)
                continue
            producers = self._read_snapshot(offset)
            if producers is None:
                self._path(offset).unlink(missing_ok=True)
                continue
            self._producers = producers
            start_offset = max(start_offset, offset)
            break
        self._remove_stray_snapshots(segments)
        self._replay(segments, start_offset, now_ms)

    def _remove_stray_snapshots(self, segments: LogSegments) -> None:
        """Delete the snapshots named after no segment (a close writes one at the log end), but the newest:
        Kafka's rule, so that restarts do not pile them up."""
        base_offsets = {segment.base_offset for segment in segments}
        for offset in self.snapshot_offsets()[:-1]:
            if offset not in base_offsets:
                self._path(offset).unlink(missing_ok=True)

    def truncated(self, segments: LogSegments, now_ms: int) -> None:
        """The log of ``segments`` was cut at its end: rebuild if a producer's cached batches lay beyond it."""
        log_end_offset = segments.active.next_offset
        if any(entry.last_offset >= log_end_offset for entry in self._producers.values()):
            self.load(segments, now_ms)
            return
        for offset in self.snapshot_offsets():
            if offset > log_end_offset:
                self._path(offset).unlink(missing_ok=True)

    def clear(self) -> list[Path]:
        """Forget every producer (the log was emptied); the snapshot files, renamed for deletion."""
        self._producers = {}
        return self._rename_for_deletion(self.snapshot_offsets())

    def snapshots_below(self, offset: int) -> list[Path]:
        """Snapshots below ``offset`` (the new log start: their segments are gone), renamed for deletion."""
        return self._rename_for_deletion([snapshot for snapshot in self.snapshot_offsets() if snapshot < offset])

    def delete_snapshot(self, offset: int) -> None:
        """Delete the snapshot named ``offset``, if any, with the segment of that base offset (compaction
        emptied it). Touches only the file, so the compaction's thread may call it."""
        self._path(offset).unlink(missing_ok=True)

    def _rename_for_deletion(self, offsets: Iterable[int]) -> list[Path]:
        renamed = []
        for offset in offsets:
            path = self._path(offset)
            target = path.with_name(path.name + DELETED_SUFFIX)
            try:
                path.replace(target)
            except FileNotFoundError:
                continue
            renamed.append(target)
        return renamed

    def _path(self, offset: int) -> Path:
        return self.directory / snapshot_file_name(offset)

    def _read_snapshot(self, offset: int) -> dict[int, ProducerEntry] | None:
        """The producers a snapshot holds, or None if it is missing, fails its CRC or does not decode."""
        try:
            content = self._path(offset).read_bytes()
        except FileNotFoundError:
            return None
        if len(content) < CHECKSUM.size or CHECKSUM.unpack_from(content)[0] != crc32c(content[CHECKSUM.size:]):
            return None
        try:
            snapshot = _DECODER.decode(content[CHECKSUM.size:])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if snapshot.version != SNAPSHOT_VERSION:
            return None
        return {producer.producer_id: ProducerEntry(producer.epoch, producer.last_activity_ms, producer.batches)
                for producer in snapshot.producers if producer.batches}

    def _replay(self, segments: LogSegments, start_offset: int, now_ms: int) -> None:
        """Record the headers of every batch from ``start_offset`` to the log end."""
        for segment in segments.starting_at(start_offset):
            position = segment.offset_index.lookup(start_offset).position if segment.base_offset < start_offset else 0
            self.record((header for _, header in segment.batch_headers(position)
                         if header.base_offset >= start_offset), now_ms)


def _check_fields(header: BatchHeader) -> None:
    if header.base_sequence < 0:
        raise OutOfOrderSequenceError(f"producer {header.producer_id}: an idempotent batch needs a sequence "
                                      f"(0 or more), got {header.base_sequence}")
    if header.producer_epoch < 0:
        raise InvalidProducerEpochError(f"producer {header.producer_id}: an idempotent batch needs an epoch "
                                        f"(0 or more), got {header.producer_epoch}")


def _check_sequence(header: BatchHeader, stored: tuple[int, int] | None) -> None:
    """Whether a batch may follow what the partition holds of its producer: (epoch, last sequence) or None."""
    producer_id, epoch, first_sequence = header.producer_id, header.producer_epoch, header.base_sequence
    if stored is None:
        if first_sequence != 0:
            raise UnknownProducerIdError(
                f"producer {producer_id} has no state on this partition (never seen, expired or evicted) and "
                f"its batch starts at sequence {first_sequence}, not 0")
        return
    stored_epoch, stored_last_sequence = stored
    if epoch < stored_epoch:
        raise InvalidProducerEpochError(f"producer {producer_id}: epoch {epoch} is older than {stored_epoch}")
    if epoch > stored_epoch:
        if first_sequence != 0:
            raise OutOfOrderSequenceError(f"producer {producer_id}: new epoch {epoch} starts at sequence "
                                          f"{first_sequence}, not 0")
        return
    expected = (stored_last_sequence + 1) % SEQUENCE_WRAP
    if first_sequence != expected:
        raise OutOfOrderSequenceError(f"producer {producer_id} at epoch {epoch}: batch starts at sequence "
                                      f"{first_sequence}, expected {expected}")
