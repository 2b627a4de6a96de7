"""Every partition log of one broker node, and the periodic work over them: retention, compaction, flushing."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Awaitable, Callable, Mapping, TypeVar

from rill.client.errors import (
    InvalidConfigError,
    InvalidTopicError,
    RillError,
    StorageError,
)
from rill.client.topic_names import TOPIC_NAME_CHARACTERS, topic_name_problem
from rill.node.log.cleaner import CompactionAborted
from rill.node.log.config import LogConfig
from rill.node.log.disk_work import DiskWork
from rill.node.log.executor import LogExecutor
from rill.node.log.files import fsync_directory, write_atomically
from rill.node.log.loader import CLEAN_SHUTDOWN_FILE
from rill.node.log.log import Log, wall_clock_ms
from rill.node.log.producer_state import ProducerStateSettings
from rill.node.structured_logging import log_event

# The partition directory is "<topic>-<partition>". Greedy on the topic, so the split is on the last "-":
# topic names may contain "-".
PARTITION_DIRECTORY = re.compile(rf"(?P<topic>[{TOPIC_NAME_CHARACTERS}]+)-(?P<partition>[0-9]+)")
# A deleted partition's directory, renamed (as Kafka does) until its files are removed.
DELETED_DIRECTORY = re.compile(rf"[{TOPIC_NAME_CHARACTERS}]+-[0-9]+\.[0-9a-f]{{32}}-delete")

TopicConfigs = Mapping[str, LogConfig] | Callable[[str], LogConfig | None]
EndOffsets = Callable[[str, int], int | None]
StorageErrorListener = Callable[[str, int, StorageError], None]
PartitionKey = tuple[str, int]
Result = TypeVar("Result")
LogToOpen = tuple[PartitionKey, Path, LogConfig]

OPEN_BATCH = 64  # logs opened per disk-executor job at start: one loop round trip per batch, not per log

logger = logging.getLogger(__name__)


def _no_end_offset(topic: str, partition: int) -> None:
    return None


def _log_retention(key: PartitionKey, log: Log, segments: int, size_before: int) -> None:
    """A retention_delete event for segments that retention just took out of ``log``.

    The reason is "size" when the log is still at or above retention.bytes (the size rule alone would
    have deleted these segments; some may also have been past retention.ms), else "time": the size rule
    never takes a log below its limit.
    """
    limit = log.config.retention_bytes
    reason = "size" if 0 <= limit <= log.size_bytes else "time"
    log_event(logger, logging.INFO, "retention_delete",
              f"{key[0]}-{key[1]}: retention deleted {segments} segment(s), {size_before - log.size_bytes} "
              f"bytes ({reason}); the log starts at offset {log.log_start_offset}",
              topic=key[0], partition=key[1], segments=segments, bytes=size_before - log.size_bytes,
              reason=reason, log_start_offset=log.log_start_offset)


class LogManager:
    """The partition logs of one node, each in ``<data_dir>/<topic>-<partition>/``.

    On disk: one directory per partition replica, laid out as Log
    describes; a deleted partition's directory is first renamed to
    ``<topic>-<partition>.<32 hex digits>-delete`` and removed by the next
    cleanup pass (or the next start). Nothing else in ``data_dir`` is
    touched, and other directory names are ignored, but for
    ``clean-shutdown``: the marker :meth:`close_all` writes once every log
    closed cleanly (one per data directory, as Kafka's). At the next start
    every log is opened as clean (no recovery scan), then the marker goes:
    one unlink and one directory fsync, however many logs. Without it each
    log recovers from its recovery checkpoint.

    Invariants: at most one open Log per (topic, partition), and its
    directory name is derived from them.

    Slow disk work runs on a LogExecutor, off the event loop: opening
    (recovery), flush.ms fsyncs, retention's file deletions, compaction and
    the file half of truncations. Each log's maintenance holds that log's
    lock, so it never interleaves with other maintenance of the same log;
    appends and reads stay on the loop (see Log for the halves).

    A StorageError in that work takes the partition offline: the log leaves
    the manager (no more maintenance, and no clean-shutdown marker at close,
    so the next start recovers every log) and ``on_storage_error(topic,
    partition, error)`` tells the broker, which stops serving the partition.

    ``cleanable_end_offset(topic, partition)`` bounds what compaction of a
    partition may consider; the broker should give the high watermark, so
    that records a leader change could truncate never replace committed
    ones (None: the log end offset). A log whose compaction fails otherwise
    is left out of compaction until the node restarts, as Kafka's cleaner
    does. A truncation, deletion or shutdown stops a running compaction of
    its log first.

    Not thread-safe: used from the broker's one asyncio thread.
    """

    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig | None = None,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        cleanable_end_offset: EndOffsets = _no_end_offset,
        executor: LogExecutor | None = None,
        producer_settings: ProducerStateSettings | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.default_config = default_config or LogConfig()
        self.producer_settings = producer_settings or ProducerStateSettings()
        self.cleanable_end_offset = cleanable_end_offset
        self.on_storage_error: StorageErrorListener = self._take_offline_on_error
        self._clock_ms = clock_ms
        self._executor = executor or LogExecutor()
        self._logs: dict[PartitionKey, Log] = {}
        self._offline: dict[PartitionKey, Log] = {}
        self._retired: list[tuple[Log, Path | None]] = []  # to close, and the renamed directory to remove
        self._compacting: dict[Log, threading.Event] = {}  # the stop of each running compaction
        self._uncleanable: set[PartitionKey] = set()
        self._unrecovered: set[PartitionKey] = set()  # left closed at a start after a crash: never recovered
        # The logs the flush and compaction passes look at (flush.ms set; cleanup.policy compact), noted as they
        # open (a log's config is fixed for its life): an idle broker's passes do not touch every log.
        self._flushed_by_time: dict[PartitionKey, Log] = {}
        self._compacted: dict[PartitionKey, Log] = {}
        data_dir.mkdir(parents=True, exist_ok=True)

    def get(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def get_or_create(self, topic: str, partition: int, config: LogConfig | None = None) -> Log:
        """The open log of the partition, opening (and recovering, or creating) it if needed.

        Raises StorageError for a partition taken offline after a disk error (until the node restarts).
        """
        key = (topic, partition)
        if key in self._offline:
            raise StorageError(f"{topic}-{partition} is offline on this broker after a disk error")
        log = self._logs.get(key)
        if log is None:
            directory = self._partition_directory(topic, partition)
            log = Log(directory, config or self.default_config, clock_ms=self._clock_ms,
                      producer_settings=self.producer_settings)
            self._logs[key] = log
            self._unrecovered.discard(key)
            self._note_passes(key, log)
        return log

    def _partition_directory(self, topic: str, partition: int) -> Path:
        if topic_name_problem(topic) is not None or partition < 0:
            raise InvalidTopicError(f"no log directory for topic {topic!r} partition {partition}")
        return self.data_dir / f"{topic}-{partition}"

    async def load_existing(self, configs_by_topic: TopicConfigs) -> list[PartitionKey]:
        """Open every partition directory in ``data_dir``; return the (topic, partition) pairs opened.

        The logs are opened (and recovered) on the disk executor in batches
        of OPEN_BATCH, the executor's threads working on different batches at
        once, so the event loop keeps running meanwhile; directories of
        deleted partitions are removed. After a clean shutdown (the data
        directory's marker) no log is scanned, and the marker is removed once
        all are open. ``configs_by_topic`` maps a topic to its LogConfig: a
        mapping, or a function; a topic missing from the mapping, or for
        which the function returns None, gets the default config. A topic for
        which the function raises InvalidConfigError (its stored config
        cannot be applied) is left closed: opened with other settings,
        recovery or retention could cut records that its own settings keep.
        """
        config_for = configs_by_topic if callable(configs_by_topic) else self._lookup_in(configs_by_topic)
        clean = (self.data_dir / CLEAN_SHUTDOWN_FILE).exists()
        to_open: list[LogToOpen] = []
        for name in self._subdirectories():
            directory = self.data_dir / name
            if DELETED_DIRECTORY.fullmatch(name):
                await self._executor.run(shutil.rmtree, directory)
                continue
            match = PARTITION_DIRECTORY.fullmatch(name)
            if match is None:
                continue
            key = (match["topic"], int(match["partition"]))
            try:
                config = config_for(key[0])
            except InvalidConfigError as error:
                logger.error("leaving the log of %s-%d closed: %s", *key, error)
                if not clean:
                    self._unrecovered.add(key)
                continue
            to_open.append((key, directory, config or self.default_config))
        batches = [to_open[first : first + OPEN_BATCH] for first in range(0, len(to_open), OPEN_BATCH)]
        for batch in await asyncio.gather(*(self._executor.run(self._open_logs, batch, clean) for batch in batches)):
            self._logs.update(batch)
            for key, log in batch:
                self._note_passes(key, log)
        if clean:
            await self._executor.run(self._remove_clean_shutdown_marker)
        return [key for key, _, _ in to_open]

    def _subdirectories(self) -> list[str]:
        """The names of the folders in ``data_dir``, sorted (the file type from the listing: no stat each)."""
        with os.scandir(self.data_dir) as entries:
            return sorted(entry.name for entry in entries if entry.is_dir())

    def _open_logs(self, batch: list[LogToOpen], clean: bool) -> list[tuple[PartitionKey, Log]]:
        """Open a batch of logs (on an executor thread)."""
        return [(key, Log(directory, config, clock_ms=self._clock_ms, producer_settings=self.producer_settings,
                          clean_shutdown=clean)) for key, directory, config in batch]

    def _note_passes(self, key: PartitionKey, log: Log) -> None:
        """Note an opened log in the flush and compaction passes its config asks for."""
        if log.config.flush_ms is not None:
            self._flushed_by_time[key] = log
        if log.config.compact:
            self._compacted[key] = log

    def _still_open(self, noted: dict[PartitionKey, Log]) -> list[tuple[PartitionKey, Log]]:
        """The logs of ``noted`` still open here; the others (deleted, offline, closed) leave it."""
        for key in [key for key, log in noted.items() if self._logs.get(key) is not log]:
            del noted[key]
        return list(noted.items())

    def _remove_clean_shutdown_marker(self) -> None:
        """Durably, before any log changes: a crash from now on must not pass for a clean shutdown."""
        (self.data_dir / CLEAN_SHUTDOWN_FILE).unlink()
        fsync_directory(self.data_dir)

    def _lookup_in(self, configs: Mapping[str, LogConfig]) -> Callable[[str], LogConfig]:
        return lambda topic: configs.get(topic, self.default_config)

    def partitions(self) -> list[PartitionKey]:
        """The (topic, partition) pairs with an open log."""
        return list(self._logs)

    def delete_topic(self, topic: str) -> int:
        """Delete every partition log of ``topic`` held here (offline ones too); return how many.

        At once the logs leave the manager and their directories are renamed
        (so the topic can be created again right away); their files are
        closed and removed by the next cleanup pass, off the event loop.
        """
        doomed = [key for key in [*self._logs, *self._offline] if key[0] == topic]
        for key in doomed:
            log = self._logs.pop(key, None) or self._offline.pop(key)
            self._stop_compaction(log)
            self._uncleanable.discard(key)
            self._retired.append((log, self._rename_for_deletion(log.directory)))
        return len(doomed)

    @staticmethod
    def _rename_for_deletion(directory: Path) -> Path | None:
        target = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}-delete")
        try:
            os.replace(directory, target)
        except OSError as error:
            log_event(logger, logging.ERROR, "storage_error", f"could not rename {directory} for deletion, "
                      f"leaving it: {error}", path=str(directory), error=str(error), action="rename_for_deletion")
            return None
        return target

    def take_offline(self, topic: str, partition: int) -> None:
        """Stop every maintenance of the partition's log after a disk error; its files are closed by the
        next cleanup pass, without the clean-shutdown marker, so the next start recovers the log."""
        log = self._logs.pop((topic, partition), None)
        if log is None:
            return
        self._offline[(topic, partition)] = log
        self._stop_compaction(log)
        self._retired.append((log, None))

    def _take_offline_on_error(self, topic: str, partition: int, error: StorageError) -> None:
        log_event(logger, logging.ERROR, "storage_error", f"{topic}-{partition}: disk error, the log goes offline: "
                  f"{error}", topic=topic, partition=partition, error=str(error), action="log_offline")
        self.take_offline(topic, partition)

    # ---- periodic work -----------------------------------------------------------------

    async def cleanup(self, now_ms: int) -> int:
        """Remove deleted logs, apply retention to every log whose policy has delete, then compact at most
        one log (see :meth:`compact_dirtiest`); return the number of segments retention deleted."""
        await self._close_retired()
        deleted = 0
        for key, log in list(self._logs.items()):
            if log.config.delete and log.segment_count > 1:  # only inactive segments go: skip the rest cheaply
                deleted += await self._maintain(key, log, self._delete_old_segments, key, now_ms) or 0
        await self.compact_dirtiest(now_ms)
        return deleted

    async def _delete_old_segments(self, log: Log, key: PartitionKey, now_ms: int) -> int:
        size_before = log.size_bytes
        count, work = log.start_retention(now_ms)
        if count:
            _log_retention(key, log, count, size_before)  # they left the log; their files go next
            await self._executor.run(work.run)
        return count

    async def compact_dirtiest(self, now_ms: int) -> PartitionKey | None:
        """Compact the log with the highest dirty ratio among those due; return its (topic, partition).

        One log per call bounds a pass; the pass itself runs on the disk executor.
        """
        due = self._due_for_compaction(now_ms)
        if not due:
            return None
        _, key = max(due)
        compacted = await self._maintain(key, self._logs[key], self._compact, key, now_ms)
        return key if compacted else None

    async def _compact(self, log: Log, key: PartitionKey, now_ms: int) -> bool:
        plan = log.plan_compaction(now_ms, self.cleanable_end_offset(*key))
        if plan is None:
            return False
        stop = self._compacting[log] = threading.Event()
        try:
            result = await self._executor.run(log.run_compaction, plan, stop)
        except CompactionAborted:
            logger.info("compaction of %s-%d stopped: the log is being truncated, closed or deleted", *key)
            return False
        except StorageError:
            raise
        except RillError:
            logger.exception("compaction of %s-%d failed; it is not compacted again until restart", *key)
            self._uncleanable.add(key)
            return False
        finally:
            self._compacting.pop(log, None)
        log.apply_compaction(result)
        return True

    def _due_for_compaction(self, now_ms: int) -> list[tuple[float, PartitionKey]]:
        """(dirty ratio, key) of each compacted log whose ratio reached its min.cleanable.dirty.ratio."""
        due = []
        for key, log in self._still_open(self._compacted):
            if key not in self._uncleanable:
                ratio = log.dirty_ratio(now_ms, self.cleanable_end_offset(*key))
                if ratio > 0 and ratio >= log.config.min_cleanable_dirty_ratio:
                    due.append((ratio, key))
        return due

    def remove_expired_producers(self, now_ms: int) -> int:
        """Forget, on every log, idempotent producers idle for producer_id_expiration_ms; return how many.

        Only in-memory state changes (the next snapshot leaves them out), so it runs on the loop.
        """
        return sum(log.remove_expired_producers(now_ms) for log in self._logs.values())

    async def flush_due(self, now_ms: int) -> int:
        """Flush every log whose flush.ms has passed, the fsyncs of different logs in parallel; return how
        many were flushed. A log busy with other maintenance (a compaction) waits for the next pass."""
        due = [(key, log) for key, log in self._still_open(self._flushed_by_time)
               if log.flush_due(now_ms) and not self._executor.busy(log)]
        flushed = await asyncio.gather(*(self._maintain(key, log, self._flush, now_ms) for key, log in due))
        return sum(1 for done in flushed if done)

    async def _flush(self, log: Log, now_ms: int) -> bool:
        pending = log.start_flush(now_ms)
        await self._executor.run(log.complete_flush, pending)
        log.finish_flush(pending)
        return True

    async def _maintain(self, key: PartitionKey, log: Log, job: Callable[..., Awaitable[Result]],
                        *arguments: object) -> Result | None:
        """``job(log, *arguments)`` holding the log's lock; None if the log left the manager first (deleted
        or offline). A StorageError takes the partition offline."""
        async with self._executor.exclusive(log):
            if self._logs.get(key) is not log:
                return None
            try:
                return await job(log, *arguments)
            except StorageError as error:
                if self._logs.get(key) is log:
                    self.on_storage_error(*key, error)
                return None

    # ---- truncation (the follower's) --------------------------------------------------------

    async def truncate(self, log: Log, start: Callable[[], DiskWork], still_wanted: Callable[[], bool]) -> bool:
        """Truncate ``log`` with ``start`` (``log.start_truncation`` or ``start_full_truncation`` with its
        offset), its file work on the disk executor; say whether it did.

        A running compaction of the log stops first. ``still_wanted()`` is
        asked once the log's lock is held, as waiting for it lets other
        things happen (a leader change): nothing is cut unless it says yes.
        StorageError propagates; the caller takes the partition offline.
        """
        self._stop_compaction(log)
        async with self._executor.exclusive(log):
            if not still_wanted():
                return False
            work = start()
            await self._executor.run(work.run)
        return True

    # ---- closing --------------------------------------------------------------------------

    def _stop_compaction(self, log: Log) -> None:
        stop = self._compacting.get(log)
        if stop is not None:
            stop.set()

    async def _close_retired(self) -> None:
        """Close the files of deleted and offline logs, and remove the deleted ones' directories."""
        retired, self._retired = self._retired, []
        for log, directory in retired:
            async with self._executor.exclusive(log):
                try:
                    log.close_files()
                    if directory is not None:
                        await self._executor.run(shutil.rmtree, directory)
                except (OSError, StorageError) as error:
                    log_event(logger, logging.ERROR, "storage_error", f"could not remove the files of "
                              f"{directory or log.directory}: {error}", path=str(directory or log.directory),
                              error=str(error), action="remove_files")
            self._executor.forget(log)

    async def close_all(self) -> None:
        """Close every log cleanly, then write the data directory's clean-shutdown marker so the next start
        skips recovery; then stop the executor. No marker if a log is offline, failed to close, or was left
        unrecovered at start: the next start recovers every log from its recovery checkpoint."""
        for stop in self._compacting.values():
            stop.set()
        all_clean = not self._offline and not self._unrecovered
        while self._logs:
            key, log = self._logs.popitem()
            async with self._executor.exclusive(log):
                try:
                    log.close()
                except StorageError as error:
                    all_clean = False
                    log_event(logger, logging.ERROR, "storage_error", f"{key[0]}-{key[1]}: closing the log failed; "
                              f"the next start recovers it: {error}", topic=key[0], partition=key[1],
                              error=str(error), action="close")
        await self._close_retired()
        if all_clean:
            await self._executor.run(self._write_clean_shutdown_marker)
        self._executor.shutdown()

    def _write_clean_shutdown_marker(self) -> None:
        try:
            write_atomically(self.data_dir / CLEAN_SHUTDOWN_FILE, b"")
        except OSError as error:
            log_event(logger, logging.ERROR, "storage_error", f"could not write the clean-shutdown marker; the "
                      f"next start recovers every log: {error}", path=str(self.data_dir), error=str(error),
                      action="clean_shutdown_marker")
