"""Log compaction (cleanup.policy=compact): closed segments keep only the latest record of each key.

One pass over a Log (see ``Log.compact``):

1. The cleanable range is the leading run of closed segments that lie wholly
   below the end offset (the log end, or the high watermark the broker
   passes) and, when min.compaction.lag.ms is set, hold no record newer than
   the lag. The pass runs only when the dirty ratio (bytes of cleanable
   segments holding offsets at or above the cleaner checkpoint, over bytes of
   all cleanable segments) reaches min.cleanable.dirty.ratio.
2. The offset map, key -> latest offset, is built over every batch below
   the end offset, the active segment included.
3. Each cleanable segment is rewritten keeping: the record at its key's
   latest offset; records with a null key; tombstones (null values) only
   while ``delete.retention.ms`` has not passed since their batch's max
   timestamp. Batches have no per-record offsets (records of a batch have
   the offsets base..base+count-1), so each maximal run of kept records
   becomes a batch of its own, with the original base offset shifted, leader
   epoch, producer, timestamps, headers and codec. A batch kept whole, or
   whose runs would not be smaller than it, is copied verbatim. A segment
   with nothing to drop is not rewritten. Offsets never change; gaps appear.
4. The cleaner checkpoint (``cleaner-offset-checkpoint`` in the partition
   folder, one integer) moves to the first offset after the cleanable
   range: the next pass skips the log until enough is written after it.
   A missing checkpoint means 0: the whole log is dirty, cleaned once more.

Crash safety. A cleaned segment is written as ``<base>.log.cleaned`` with
``.index.cleaned`` and ``.timeindex.cleaned`` and fsynced. Renaming the log
to ``<base>.log.swap`` (directory fsynced) is the commit point; then the
indexes and the log replace the old files. On open, :func:`finish_swaps`
completes a committed swap (its indexes, old or new, are deleted and
rebuilt from the log) and deletes every ``.cleaned`` file, so a crash
leaves either the old segment or the cleaned one. A segment (other than the
first, which holds the log start offset) left empty is deleted instead.
"""

from __future__ import annotations

import os
import threading
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator, Mapping, NamedTuple, Sequence

from rill.client.batch import (
    HEADER_SIZE,
    PATCH,
    BatchHeader,
    decode_payload,
    encode_batch,
    patched_prefix,
    read_header,
)
from rill.node.log.config import LogConfig
from rill.node.log.files import fsync_directory
from rill.node.log.producer_state import SEQUENCE_WRAP
from rill.node.log.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    segment_file_name,
)
from rill.node.log.segments import LogSegments

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
CLEANER_CHECKPOINT_FILE = "cleaner-offset-checkpoint"
INDEX_SUFFIXES = (INDEX_SUFFIX, TIME_INDEX_SUFFIX)

Columns = tuple[list, list, list, list]  # keys, values, timestamps, headers, as decode_payload gives them


class CompactionAborted(Exception):
    """A pass was stopped before it changed the log (the log is being truncated, closed or deleted)."""


def check_not_stopped(stop: threading.Event | None) -> None:
    """Raise CompactionAborted once ``stop`` is set: a pass on a worker thread checks it at every batch."""
    if stop is not None and stop.is_set():
        raise CompactionAborted("compaction stopped")


class CleanableRange(NamedTuple):
    """The closed segments a pass may rewrite, and the first offset after them."""

    segments: list[LogSegment]
    end_offset: int

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self.segments)

    def dirty_ratio(self, cleaned_offset: int) -> float:
        """Fraction of the range's bytes in segments holding offsets at or above ``cleaned_offset``."""
        total_bytes = self.size_bytes
        if not total_bytes:
            return 0.0
        dirty_bytes = sum(segment.size_bytes for segment in self.segments if segment.next_offset > cleaned_offset)
        return dirty_bytes / total_bytes


def cleanable_range(segments: LogSegments, config: LogConfig, now_ms: int, end_offset: int) -> CleanableRange:
    """The leading closed segments wholly below ``end_offset`` and older than min.compaction.lag.ms."""
    chosen: list[LogSegment] = []
    for segment in segments.inactive():
        if segment.next_offset > end_offset or _within_lag(segment, config, now_ms):
            return CleanableRange(chosen, segment.base_offset)
        chosen.append(segment)
    return CleanableRange(chosen, segments.active.base_offset)


def _within_lag(segment: LogSegment, config: LogConfig, now_ms: int) -> bool:
    lag_ms = config.min_compaction_lag_ms
    return lag_ms > 0 and segment.max_timestamp_ms > now_ms - lag_ms


def build_offset_map(segments: Iterable[LogSegment], end_offset: int,
                     stop: threading.Event | None = None) -> dict[bytes, int]:
    """Each non-null key's latest offset among the batches that end at or below ``end_offset``."""
    latest: dict = {}
    for header, keys in _key_columns(segments, end_offset, stop):
        latest.update(zip(keys, range(header.base_offset, header.next_offset)))  # null keys too, in bulk
    latest.pop(None, None)
    return latest


def _key_columns(segments: Iterable[LogSegment], end_offset: int,
                 stop: threading.Event | None) -> Iterator[tuple[BatchHeader, list]]:
    """Header and keys of every batch, in order, up to the first that ends after ``end_offset``."""
    for segment in segments:
        for header, batch in segment.checked_batches():
            check_not_stopped(stop)
            if header.next_offset > end_offset:
                return
            yield header, decode_payload(header, batch[HEADER_SIZE:])[0]


def clean_segment(
    directory: Path, segment: LogSegment, latest: Mapping[bytes, int], now_ms: int, config: LogConfig,
    stop: threading.Event | None = None,
) -> LogSegment | None:
    """Write the cleaned copy of ``segment`` under ".cleaned" names, sealed and fsynced (its files
    closed); None when nothing in it would change. The cleaned files are removed on an error or a stop."""
    cleaned = None
    try:
        for header, batch in segment.checked_batches():
            check_not_stopped(stop)
            kept = clean_batch(header, batch, latest, now_ms, config.delete_retention_ms)
            if cleaned is None:
                if len(kept) == 1 and kept[0] is batch:
                    continue
                cleaned = _start_cleaned_copy(directory, segment, header.base_offset, now_ms, config)
            if kept:
                cleaned.append([read_header(piece) for piece in kept], kept)
        if cleaned is not None:
            cleaned.seal()
            cleaned.flush()
            cleaned.close()
            fsync_directory(directory)
        return cleaned
    except BaseException:
        if cleaned is not None:
            cleaned.delete()
        raise


def _start_cleaned_copy(
    directory: Path, segment: LogSegment, first_changed_offset: int, now_ms: int, config: LogConfig
) -> LogSegment:
    """A new ".cleaned" segment holding, verbatim, the batches of ``segment`` before the first one that changes."""
    cleaned = LogSegment.create(directory, segment.base_offset, config, now_ms, file_suffix=CLEANED_SUFFIX)
    for header, batch in segment.checked_batches():
        if header.base_offset >= first_changed_offset:
            break
        cleaned.append([header], [batch])
    return cleaned


def clean_batch(
    header: BatchHeader, batch: memoryview, latest: Mapping[bytes, int], now_ms: int, delete_retention_ms: int
) -> list[bytes | memoryview]:
    """What replaces one batch: ``[batch]`` itself when it stays whole (or splitting would not shrink
    it), else one new batch per run of kept records (none when no record stays)."""
    columns = decode_payload(header, batch[HEADER_SIZE:])
    drop_tombstones = now_ms - header.max_timestamp >= delete_retention_ms
    runs = kept_runs(header.base_offset, columns[0], columns[1], latest, drop_tombstones)
    if runs == [(0, header.record_count)]:
        return [batch]
    rebuilt = [encode_run(header, columns, start, end) for start, end in runs]
    if sum(map(len, rebuilt)) >= header.size:
        return [batch]
    return rebuilt


def kept_runs(
    base_offset: int,
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    latest: Mapping[bytes, int],
    drop_tombstones: bool,
) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of record indexes that compaction keeps."""
    kept = [
        key is None or (latest.get(key) == base_offset + index and not (drop_tombstones and value is None))
        for index, (key, value) in enumerate(zip(keys, values))
    ]
    runs = []
    start = 0
    for keep, group in groupby(kept):
        end = start + sum(1 for _ in group)
        if keep:
            runs.append((start, end))
        start = end
    return runs


def encode_run(header: BatchHeader, columns: Columns, start: int, end: int) -> bytes:
    """Records [start, end) of a batch as a batch of their own: its offsets, epoch, producer and codec."""
    keys, values, timestamps, headers = columns
    run_headers = headers[start:end]
    # The run's first sequence, wrapping at 2**31 as sequences do, so an idempotent producer's state
    # rebuilt from the cleaned log still sees each record's own sequence.
    sequence = (header.base_sequence + start) % SEQUENCE_WRAP if header.base_sequence >= 0 else header.base_sequence
    batch = encode_batch(
        values[start:end],
        keys[start:end],
        timestamps[start:end],
        run_headers if any(run_headers) else None,
        compression=header.compression,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=sequence,
    )
    prefix = patched_prefix(header.base_offset + start, read_header(batch).batch_length, header.leader_epoch)
    return prefix + batch[PATCH.size :]


def _file(directory: Path, base_offset: int, suffix: str, extra: str = "") -> Path:
    return directory / (segment_file_name(base_offset, suffix) + extra)


def swap_in(directory: Path, base_offset: int) -> None:
    """Replace the files of the segment at ``base_offset`` by its ".cleaned" files (see the module doc)."""
    swap = _file(directory, base_offset, LOG_SUFFIX, SWAP_SUFFIX)
    os.replace(_file(directory, base_offset, LOG_SUFFIX, CLEANED_SUFFIX), swap)
    fsync_directory(directory)  # the commit point
    for suffix in INDEX_SUFFIXES:
        os.replace(_file(directory, base_offset, suffix, CLEANED_SUFFIX), _file(directory, base_offset, suffix))
    os.replace(swap, _file(directory, base_offset, LOG_SUFFIX))
    fsync_directory(directory)


def finish_swaps(directory: Path) -> None:
    """On open: complete every committed swap (indexes deleted, to be rebuilt) and drop ".cleaned" files."""
    swaps = list(directory.glob("*" + LOG_SUFFIX + SWAP_SUFFIX))
    for swap in swaps:
        final = swap.with_name(swap.name[: -len(SWAP_SUFFIX)])
        for suffix in INDEX_SUFFIXES:
            final.with_suffix(suffix).unlink(missing_ok=True)
        os.replace(swap, final)
    leftovers = list(directory.glob("*" + CLEANED_SUFFIX))
    for path in leftovers:
        path.unlink()
    if swaps or leftovers:
        fsync_directory(directory)
