"""Opening a partition directory: find the segments, recover what a crash may have torn, rebuild what is missing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from rill.client.batch import BatchHeader
from rill.node.log import leader_epoch_cache
from rill.node.log.checkpoint import read_offset_checkpoint
from rill.node.log.cleaner import CLEANED_SUFFIX, SWAP_SUFFIX, finish_swaps
from rill.node.log.config import LogConfig
from rill.node.log.files import TEMPORARY_SUFFIX
from rill.node.log.leader_epoch_cache import EpochEntry, LeaderEpochCache
from rill.node.log.producer_state import ProducerStateManager, ProducerStateSettings
from rill.node.log.segment import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    parse_base_offset,
)
from rill.node.log.segments import LogSegments

CLEAN_SHUTDOWN_FILE = "clean-shutdown"  # in the data directory; older versions wrote one per partition directory
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"


class LoadedLog(NamedTuple):
    """What the loader hands the Log: the surviving segments, where recovery is complete, the epoch cache,
    the idempotent producers' state, the recovery checkpoint found on disk (None: none), and whether the
    directory holds an older version's per-partition clean-shutdown marker (the Log removes it)."""

    segments: LogSegments
    recovery_point: int
    leader_epoch_cache: LeaderEpochCache
    producer_state: ProducerStateManager
    checkpointed_recovery_point: int | None = None
    legacy_marker: bool = False


def load_log(directory: Path, config: LogConfig, now_ms: int,
             producer_settings: ProducerStateSettings | None = None, clean_shutdown: bool = False) -> LoadedLog:
    """Open every segment in ``directory`` (created if missing) and make the log whole again.

    After a clean shutdown (``clean_shutdown``: the LogManager found its
    data directory's marker; or this directory holds the per-partition
    marker an older version wrote) segments are trusted and only those
    whose indexes are missing or inconsistent are rescanned.
    Otherwise every segment from the one holding the recovery checkpoint on
    is scanned and CRC-checked, and the log is cut at the first torn or
    corrupt batch: the rest of that segment and every later segment go.
    A gap between two segments is treated the same way, unless the log is
    compacted (compaction leaves gaps). A compaction interrupted by a crash
    is completed or discarded first (see :func:`finish_swaps`). The producer
    state is the newest snapshot at or below the log end plus the batch
    headers after it (see ProducerStateManager.load).
    """
    if not directory.exists():
        return _new_log(directory, config, now_ms, producer_settings)
    names = _remove_leftovers(directory)
    legacy_marker = CLEAN_SHUTDOWN_FILE in names
    clean_shutdown = clean_shutdown or legacy_marker
    checkpointed = read_offset_checkpoint(directory / RECOVERY_POINT_FILE)
    recovery_point = None if clean_shutdown else checkpointed or 0
    cache = LeaderEpochCache.read(directory / leader_epoch_cache.FILE_NAME)
    on_batch = None if cache is None else _epoch_recorder(cache)
    segments = _load_segments(directory, _segment_base_offsets(names), config, now_ms, recovery_point, on_batch)
    if cache is None:
        cache = _rebuild_epoch_cache(directory / leader_epoch_cache.FILE_NAME, segments)
    log_end_offset = segments.active.next_offset
    cache.truncate_from_end(log_end_offset)
    cache.truncate_from_start(segments.first.base_offset)
    recovery_point = log_end_offset if recovery_point is None else min(recovery_point, log_end_offset)
    producer_state = ProducerStateManager(directory, producer_settings or ProducerStateSettings())
    producer_state.load(segments, now_ms)
    return LoadedLog(segments, recovery_point, cache, producer_state, checkpointed, legacy_marker)


def _new_log(directory: Path, config: LogConfig, now_ms: int,
             producer_settings: ProducerStateSettings | None) -> LoadedLog:
    """A log that did not exist: no leftovers to remove, segments to recover or snapshots to read, so no
    directory listing (creating thousands of partitions runs this on the loop once per partition)."""
    directory.mkdir(parents=True)
    segments = LogSegments()
    segments.add(LogSegment.create(directory, 0, config, now_ms))
    cache = LeaderEpochCache(directory / leader_epoch_cache.FILE_NAME, [])
    producer_state = ProducerStateManager(directory, producer_settings or ProducerStateSettings())
    return LoadedLog(segments, 0, cache, producer_state)


def _remove_leftovers(directory: Path) -> list[str]:
    """Half-done compaction swaps, half-written checkpoints, files renamed for deletion, and indexes whose
    .log is gone; the names of the files left. One directory listing (not one per kind of file): opening
    thousands of logs at start is mostly this."""
    names = os.listdir(directory)
    if any(name.endswith((SWAP_SUFFIX, CLEANED_SUFFIX)) for name in names):
        finish_swaps(directory)
        names = os.listdir(directory)
    log_bases = {parse_base_offset(name, LOG_SUFFIX) for name in names if name.endswith(LOG_SUFFIX)}
    kept = []
    for name in names:
        if name.endswith((TEMPORARY_SUFFIX, DELETED_SUFFIX)) or (
                name.endswith((INDEX_SUFFIX, TIME_INDEX_SUFFIX)) and _index_base(name) not in log_bases):
            (directory / name).unlink()
        else:
            kept.append(name)
    return kept


def _index_base(name: str) -> int | None:
    suffix = INDEX_SUFFIX if name.endswith(INDEX_SUFFIX) else TIME_INDEX_SUFFIX
    return parse_base_offset(name, suffix)


def _segment_base_offsets(names: list[str]) -> list[int]:
    bases = (parse_base_offset(name, LOG_SUFFIX) for name in names if name.endswith(LOG_SUFFIX))
    return sorted(base for base in bases if base is not None)


def _load_segments(
    directory: Path,
    base_offsets: list[int],
    config: LogConfig,
    now_ms: int,
    recovery_point: int | None,
    on_batch: Callable[[BatchHeader], None] | None,
) -> LogSegments:
    opened = [LogSegment.open(directory, base, config, now_ms) for base in base_offsets]
    segments = LogSegments()
    for slot, segment in enumerate(opened):
        later = opened[slot + 1 :]
        next_base_offset = later[0].base_offset if later else None
        may_be_torn = recovery_point is not None and (next_base_offset is None or next_base_offset > recovery_point)
        truncated_bytes = 0
        if may_be_torn or not segment.load():
            truncated_bytes = segment.recover(on_batch)
        segments.add(segment)
        if truncated_bytes or (next_base_offset is not None and not segment.continues_into(next_base_offset)):
            for discarded in later:
                discarded.delete()
            break
    if not segments:
        segments.add(LogSegment.create(directory, 0, config, now_ms))
    return segments


def _epoch_recorder(cache: LeaderEpochCache) -> Callable[[BatchHeader], None]:
    """During recovery, add the epochs of recovered batches that the cache had not recorded yet."""

    def record(header: BatchHeader) -> None:
        latest_epoch = cache.latest_epoch
        if header.leader_epoch >= 0 and (latest_epoch is None or header.leader_epoch > latest_epoch):
            cache.assign(header.leader_epoch, header.base_offset)

    return record


def _rebuild_epoch_cache(path: Path, segments: LogSegments) -> LeaderEpochCache:
    """The cache file is missing or unreadable: rebuild it from every batch header, one loop step per batch."""
    entries: list[EpochEntry] = []
    for segment in segments:
        for _, header in segment.batch_headers():
            if header.leader_epoch >= 0 and (not entries or header.leader_epoch > entries[-1].epoch):
                entries.append(EpochEntry(header.leader_epoch, header.base_offset))
    cache = LeaderEpochCache(path, entries)
    if entries:  # an empty log's cache is rebuilt as cheaply as read; its first epoch writes the file
        cache.write()
    return cache
