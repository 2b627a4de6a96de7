"""Slow disk work leaves the event loop: with fsync stalled, the loop still runs what is due on time.

Each test drives a LogManager (the broker's own code path) on an asyncio loop
while an EventLoopLagMonitor (the broker's own monitor, standing in for its
heartbeats) measures how late the loop wakes it. os.fsync is patched to
stall for STALL_S; work done on the loop would make the lag at least that.
The bound is half the stall, a wide margin: an unloaded loop lags a few ms.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time

import pytest
from rill.client.batch import decode_batch, encode_batch, iter_batches
from rill.client.errors import StorageError
from rill.node.event_loop_lag import EventLoopLagMonitor, LagSummary
from rill.node.log import cleaner
from rill.node.log.checkpoint import read_offset_checkpoint
from rill.node.log.config import LogConfig
from rill.node.log.entry_file import EntryFile
from rill.node.log.loader import CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE
from rill.node.log.log import Log
from rill.node.log.manager import LogManager
from rill.node.log.segment import LogSegment

STALL_S = 1.0
LAG_BOUND_MS = STALL_S * 1000 / 2
MONITOR_INTERVAL_MS = 20
ONE_BATCH_PER_SEGMENT = 14


class SlowFsync:
    """os.fsync that first sleeps ``stall_s`` (for the first ``stalls_max`` calls, to bound the test's
    time) and notes the thread of every call."""

    def __init__(self, stall_s: float, stalls_max: int):
        self.stall_s = stall_s
        self.stalls_max = stalls_max
        self.threads: list[str] = []
        self._real = os.fsync

    def __call__(self, descriptor: int) -> None:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) <= self.stalls_max:
            time.sleep(self.stall_s)
        self._real(descriptor)

    @property
    def stalled_s(self) -> float:
        return self.stall_s * min(len(self.threads), self.stalls_max)


@pytest.fixture
def slow_fsync(monkeypatch):
    """``slow_fsync()`` makes every os.fsync of this process a SlowFsync."""

    def install(stall_s: float = STALL_S, stalls_max: int = 3) -> SlowFsync:
        slow = SlowFsync(stall_s, stalls_max)
        monkeypatch.setattr(os, "fsync", slow)
        return slow

    return install


async def lag_during(work) -> tuple[object, LagSummary]:
    """Await ``work`` while the lag monitor runs; its result and the lag measured meanwhile."""
    monitor = EventLoopLagMonitor(interval_ms=MONITOR_INTERVAL_MS)
    watching = asyncio.ensure_future(monitor.run())
    try:
        result = await work
    finally:
        watching.cancel()
    return result, monitor.summary()


def assert_loop_ran_on_time(summary: LagSummary, slow: SlowFsync) -> None:
    assert slow.threads, "the work fsynced nothing: the test stalled nothing"
    assert all(name.startswith("rill-disk") for name in slow.threads), f"fsync ran on {set(slow.threads)}"
    assert summary.max_ms < LAG_BOUND_MS, f"the loop stalled: {summary}"
    assert summary.samples >= slow.stalled_s * 1000 / MONITOR_INTERVAL_MS / 2, f"the monitor hardly ran: {summary}"


def append(log: Log, *values: bytes, epoch: int = 0, timestamp: int | None = None) -> None:
    for value in values:
        timestamps = None if timestamp is None else [timestamp]
        log.append(encode_batch([value], keys=[b"k"], timestamps=timestamps), leader_epoch=epoch)


def test_flush_fsyncs_off_the_loop(tmp_path, clock, slow_fsync):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 0, LogConfig(flush_ms=100))
    append(log, b"a", b"b")
    slow = slow_fsync()
    flushed, summary = asyncio.run(lag_during(manager.flush_due(clock.now_ms + 100)))
    assert flushed == 1 and log.recovery_point == 2
    assert read_offset_checkpoint(log.directory / RECOVERY_POINT_FILE) == 2
    assert_loop_ran_on_time(summary, slow)


def test_retention_deletes_files_off_the_loop(tmp_path, clock, slow_fsync):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 0, LogConfig(segment_bytes=ONE_BATCH_PER_SEGMENT, retention_ms=1000))
    append(log, b"a", b"b", b"c", timestamp=0)
    slow = slow_fsync()
    deleted, summary = asyncio.run(lag_during(manager.cleanup(now_ms=5000)))
    assert deleted == 2 and log.log_start_offset == 2
    assert not list(log.directory.glob("*.deleted")), "the renamed segment files are gone"
    assert_loop_ran_on_time(summary, slow)


def test_compaction_runs_off_the_loop(tmp_path, clock, slow_fsync):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 0, LogConfig(compact=True, delete=False,
                                                       segment_bytes=ONE_BATCH_PER_SEGMENT))
    append(log, b"1", b"2", b"3")
    slow = slow_fsync()
    compacted, summary = asyncio.run(lag_during(manager.compact_dirtiest(now_ms=0)))
    assert compacted == ("orders", 0)
    assert [offset for offset, _ in offsets_and_values(log)] == [2]
    assert_loop_ran_on_time(summary, slow)


def test_a_followers_truncation_fsyncs_and_deletes_off_the_loop(tmp_path, clock, slow_fsync):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 0, LogConfig(segment_bytes=ONE_BATCH_PER_SEGMENT))
    append(log, b"a", b"b")
    append(log, b"c", b"d", epoch=1)
    slow = slow_fsync()
    truncated, summary = asyncio.run(lag_during(manager.truncate(log, lambda: log.start_truncation(1),
                                                                 lambda: True)))
    assert truncated and log.log_end_offset == 1 and log.latest_epoch == 0
    assert_loop_ran_on_time(summary, slow)


def test_recovery_at_start_runs_off_the_loop(tmp_path, clock, monkeypatch):
    for partition in range(2):
        log = Log(tmp_path / f"orders-{partition}", LogConfig(), clock_ms=clock)
        append(log, b"a", b"b")  # never closed: opening recovers
    manager = LogManager(tmp_path, clock_ms=clock)
    slow = SlowFsync(STALL_S, stalls_max=2)  # stands for a long scan: recovery of a big segment fsyncs nothing
    real_recover = LogSegment.recover

    def slow_recover(segment, *arguments, **keywords):
        descriptor = os.open(segment.log_path, os.O_RDONLY)
        try:
            slow(descriptor)
        finally:
            os.close(descriptor)
        return real_recover(segment, *arguments, **keywords)

    monkeypatch.setattr(LogSegment, "recover", slow_recover)
    opened, summary = asyncio.run(lag_during(manager.load_existing({})))
    assert sorted(opened) == [("orders", 0), ("orders", 1)]
    assert manager.get("orders", 1).log_end_offset == 2
    assert len(slow.threads) == 2, "each log was recovered"
    assert_loop_ran_on_time(summary, slow)


# ---- order within one log ---------------------------------------------------------------------


def test_appends_go_on_during_a_flush_and_a_truncation_waits_for_it(tmp_path, clock, slow_fsync):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 0, LogConfig(flush_ms=100))
    append(log, b"a", b"b", b"c")
    slow_fsync(stall_s=0.3)

    async def scenario() -> None:
        flushing = asyncio.ensure_future(manager.flush_due(clock.now_ms + 100))
        await asyncio.sleep(0.05)
        append(log, b"d", b"e")  # on the loop, while the fsync of the first three runs
        assert not flushing.done() and log.log_end_offset == 5
        truncating = asyncio.ensure_future(manager.truncate(log, lambda: log.start_truncation(4), lambda: True))
        await asyncio.sleep(0.05)
        assert not truncating.done() and log.log_end_offset == 5, "the truncation waits for the log's flush"
        assert await flushing == 1
        assert log.recovery_point == 3, "records appended during the fsync are not counted as flushed"
        assert await truncating
        assert log.log_end_offset == 4 and log.recovery_point == 3

    asyncio.run(scenario())
    assert read_offset_checkpoint(log.directory / RECOVERY_POINT_FILE) == 3


def test_a_truncation_that_is_no_longer_wanted_once_the_log_is_free_cuts_nothing(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("orders", 0)
    append(log, b"a", b"b")
    assert not asyncio.run(manager.truncate(log, lambda: log.start_truncation(0), lambda: False))
    assert log.log_end_offset == 2


def test_a_stopped_compaction_changes_nothing(tmp_path, clock):
    log = Log(tmp_path / "orders-0", LogConfig(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT),
              clock_ms=clock)
    append(log, b"1", b"2", b"3")
    plan = log.plan_compaction(now_ms=0)
    stop = threading.Event()
    stop.set()
    with pytest.raises(cleaner.CompactionAborted):
        log.run_compaction(plan, stop)
    assert list(log.directory.glob("*" + cleaner.CLEANED_SUFFIX)) == []
    assert [offset for offset, _ in offsets_and_values(log)] == [0, 1, 2]
    assert log.compact(now_ms=0)  # the next pass cleans as usual
    assert [offset for offset, _ in offsets_and_values(log)] == [2]


# ---- disk errors ------------------------------------------------------------------------------


def test_a_failed_flush_takes_the_log_offline_and_its_next_open_recovers_it(tmp_path, clock, monkeypatch):
    manager = LogManager(tmp_path, clock_ms=clock)
    failing = manager.get_or_create("orders", 0, LogConfig(flush_ms=100))
    healthy = manager.get_or_create("orders", 1, LogConfig(flush_ms=100))
    append(failing, b"a")
    append(healthy, b"b")
    reported = []
    manager.on_storage_error = lambda topic, partition, error: (reported.append((topic, partition, error)),
                                                                manager.take_offline(topic, partition))
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if "orders-0" in os.readlink(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.EIO, "I/O error")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    assert asyncio.run(manager.flush_due(clock.now_ms + 100)) == 1
    assert [(topic, partition) for topic, partition, _ in reported] == [("orders", 0)]
    assert isinstance(reported[0][2], StorageError)
    assert manager.partitions() == [("orders", 1)] and healthy.recovery_point == 1
    with pytest.raises(StorageError):
        manager.get_or_create("orders", 0)
    monkeypatch.setattr(os, "fsync", real_fsync)
    asyncio.run(manager.close_all())
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists(), "an offline log is recovered at next start"
    reopened = LogManager(tmp_path, clock_ms=clock)
    asyncio.run(reopened.load_existing({}))
    assert reopened.get("orders", 0).log_end_offset == 1


def test_a_failed_index_write_undoes_the_whole_append(tmp_path, clock, monkeypatch):
    log = Log(tmp_path / "orders-0", LogConfig(index_interval_bytes=0), clock_ms=clock)
    append(log, b"a", b"b")
    size_bytes, entries = log.size_bytes, index_entries(log)
    real_append = EntryFile.append

    def full_disk(self, entry: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EntryFile, "append", full_disk)
    with pytest.raises(StorageError):
        append(log, b"c")
    monkeypatch.setattr(EntryFile, "append", real_append)
    assert (log.size_bytes, log.log_end_offset, index_entries(log)) == (size_bytes, 2, entries)
    assert (tmp_path / "orders-0" / f"{0:020d}.log").stat().st_size == size_bytes, "the batch is cut from the file"
    append(log, b"d")
    assert offsets_and_values(log) == [(0, b"a"), (1, b"b"), (2, b"d")]
    log.close()
    assert offsets_and_values(Log(tmp_path / "orders-0", LogConfig(), clock_ms=clock)) == [
        (0, b"a"), (1, b"b"), (2, b"d")]


def index_entries(log: Log) -> tuple[int, int]:
    segment = next(iter(log._segments))
    return segment.offset_index.entry_count, segment.time_index.entry_count


def offsets_and_values(log: Log) -> list[tuple[int, bytes]]:
    """(offset, value) of every record, read through the log as a consumer would."""
    found = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20)
        for position, header in iter_batches(data):
            found += [(record.offset, record.value) for record in decode_batch(data, "orders", 0, position)]
            offset = header.next_offset
    return found
