"""Log compaction (cleanup.policy=compact): what stays, reads across the gaps, crash safety, the dirty ratio."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from rill.client.batch import (
    COMPRESSION_LZ4,
    decode_batch,
    encode_batch,
    iter_batches,
    read_header,
)
from rill.client.errors import CorruptRecordError, InvalidConfigError, OffsetOutOfRangeError, StorageError
from rill.node.log import cleaner
from rill.node.log.config import LogConfig
from rill.node.log.log import Log
from rill.node.log.manager import LogManager
from rill.node.metadata.topic_config import log_config, validate_topic_config

ONE_BATCH_PER_SEGMENT = 14  # the smallest segment.bytes: every append rolls the segment first
DAY_MS = 86_400_000


@pytest.fixture
def open_compacted(open_log):
    """open_compacted(**config): a compact-only log, one batch per segment unless told otherwise."""

    def open_with(**config) -> Log:
        return open_log(**{"compact": True, "delete": False, "segment_bytes": ONE_BATCH_PER_SEGMENT, **config})

    return open_with


def append(log: Log, *records: tuple[bytes | None, bytes | None], timestamp_ms: int = 0, epoch: int = 0,
           **batch_settings) -> int:
    """Append the records as one batch; return its base offset."""
    keys = [key for key, _ in records]
    values = [value for _, value in records]
    batch = encode_batch(values, keys, [timestamp_ms] * len(records), **batch_settings)
    return log.append(batch, leader_epoch=epoch).first_offset


def batches_of(log: Log) -> list[bytes]:
    """Every batch of the log, in order, read the way a consumer does."""
    batches = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20)
        if not data:
            break
        for position, header in iter_batches(data):
            batches.append(bytes(data[position : position + header.size]))
            offset = header.next_offset
    return batches


def records_of(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record of the log."""
    return [(r.offset, r.key, r.value) for batch in batches_of(log) for r in decode_batch(batch, "t", 0)]


def files_with_suffix(directory: Path, *suffixes: str) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(suffixes))


# What stays


def test_only_the_latest_record_of_each_key_stays_in_closed_segments(open_compacted):
    log = open_compacted()
    append(log, (b"a", b"a1"), (b"b", b"b1"))
    append(log, (b"a", b"a2"))
    append(log, (b"b", b"b2"), (b"c", b"c1"))
    append(log, (b"a", b"a3"))  # the active segment
    assert log.segment_count == 4
    assert log.compact(now_ms=0)
    assert records_of(log) == [(3, b"b", b"b2"), (4, b"c", b"c1"), (5, b"a", b"a3")]
    assert (log.log_start_offset, log.log_end_offset) == (0, 6)
    assert log.segment_count == 3  # the emptied first segment stays (it holds the log start), the middle one goes


def test_the_active_segment_is_never_rewritten(open_compacted):
    log = open_compacted(segment_bytes=1 << 20)
    for value in (b"1", b"2", b"3"):
        append(log, (b"a", value))
    assert not log.compact(now_ms=0)
    assert [value for _, _, value in records_of(log)] == [b"1", b"2", b"3"]


def test_records_in_the_active_segment_supersede_older_ones(open_compacted):
    log = open_compacted()
    append(log, (b"a", b"old"), (b"b", b"kept"))
    append(log, (b"a", b"new"))
    assert log.compact(now_ms=0)
    assert records_of(log) == [(1, b"b", b"kept"), (2, b"a", b"new")]


def test_records_with_a_null_key_are_never_compacted_away(open_compacted):
    log = open_compacted()
    big = b"v" * 200  # splitting the batch in runs must make it smaller, or it is copied whole
    append(log, (None, b"n1" + big), (b"k", b"k1" + big), (None, b"n2" + big), (b"k", b"k2" + big))
    append(log, (b"k", b"k3"))
    assert log.compact(now_ms=0)
    assert [(offset, key) for offset, key, _ in records_of(log)] == [(0, None), (2, None), (4, b"k")]


def test_a_batch_kept_whole_is_copied_verbatim_and_a_split_batch_keeps_its_codec_epoch_and_headers(
    open_compacted, clock
):
    log = open_compacted()
    stamp = clock.now_ms
    append(log, (b"keep", b"same"), timestamp_ms=stamp, epoch=1)
    kept_batch = batches_of(log)[0]
    rng = random.Random(1)
    values = [rng.randbytes(100) * 3 for _ in range(6)]  # LZ4 shrinks each value, not the batch to nearly nothing
    keys = [b"a", b"b", b"c", b"d", b"e", b"f"]
    batch = encode_batch(values, keys, [stamp + number for number in range(6)],
                         [{"h": b"%d" % number} for number in range(6)], compression=COMPRESSION_LZ4,
                         producer_id=7, producer_epoch=2, base_sequence=0)  # a new producer starts at 0
    assert read_header(batch).compression == COMPRESSION_LZ4
    log.append(batch, leader_epoch=3)
    append(log, (b"b", b"new"), (b"c", b"new"), (b"e", b"new"), (b"f", b"new"), epoch=3)
    assert log.compact(now_ms=stamp)
    first, second, third, _ = batches_of(log)
    assert first == kept_batch
    assert [read_header(b).base_offset for b in (second, third)] == [1, 4]
    for split in (second, third):
        header = read_header(split)
        assert (header.compression, header.leader_epoch, header.producer_id, header.producer_epoch) == (
            COMPRESSION_LZ4, 3, 7, 2)
    assert read_header(third).base_sequence == 3
    records = decode_batch(second, "t", 0) + decode_batch(third, "t", 0)
    assert [(r.offset, r.key, r.value, r.timestamp, dict(r.headers)) for r in records] == [
        (1, b"a", values[0], stamp, {"h": b"0"}), (4, b"d", values[3], stamp + 3, {"h": b"3"})]


def test_tombstones_stay_until_delete_retention_has_passed(open_compacted, clock):
    log = open_compacted(min_cleanable_dirty_ratio=0.01)
    written_ms = clock.now_ms
    append(log, (b"gone", b"value"), timestamp_ms=written_ms)
    append(log, (b"gone", None), timestamp_ms=written_ms)
    append(log, (b"other", b"1"), timestamp_ms=written_ms)
    assert log.compact(now_ms=written_ms + DAY_MS - 1)
    assert records_of(log) == [(1, b"gone", None), (2, b"other", b"1")]
    append(log, (b"other", b"2"), timestamp_ms=written_ms)  # dirties the log again
    assert log.compact(now_ms=written_ms + DAY_MS)
    assert records_of(log) == [(3, b"other", b"2")]


def test_min_compaction_lag_leaves_recent_segments_alone(open_compacted, clock):
    log = open_compacted(min_compaction_lag_ms=60_000)
    written_ms = clock.now_ms
    append(log, (b"a", b"1"), timestamp_ms=written_ms)
    append(log, (b"a", b"2"), timestamp_ms=written_ms)
    append(log, (b"b", b"1"), timestamp_ms=written_ms)
    assert not log.compact(now_ms=written_ms + 59_999)
    assert len(records_of(log)) == 3
    assert log.compact(now_ms=written_ms + 60_000)
    assert records_of(log) == [(1, b"a", b"2"), (2, b"b", b"1")]


def test_records_at_or_after_the_end_offset_supersede_nothing(open_compacted):
    log = open_compacted()
    append(log, (b"a", b"committed"))
    append(log, (b"a", b"above the high watermark"))
    append(log, (b"b", b"1"))
    assert log.compact(now_ms=0, end_offset=1)
    assert [value for _, _, value in records_of(log)] == [b"committed", b"above the high watermark", b"1"]
    assert log.cleaned_offset == 1


# Reading a compacted log


@pytest.fixture
def gapped_log(open_compacted, clock) -> Log:
    """Offsets 0..9 written as batches [0-2] [3] [4-6] [7] [8-9] (active); after compaction 0, 2, 5, 7-9 stay."""
    log = open_compacted()
    stamp = clock.now_ms
    append(log, (b"k0", b"0" * 200), (b"x", b"1" * 200), (b"k2", b"2" * 200), timestamp_ms=stamp, epoch=1)
    append(log, (b"y", b"3"), timestamp_ms=stamp + 3, epoch=1)
    append(log, (b"x", b"4" * 200), (b"k5", b"5" * 200), (b"y", b"6" * 200), timestamp_ms=stamp + 4, epoch=2)
    append(log, (b"k7", b"7"), timestamp_ms=stamp + 7, epoch=2)
    append(log, (b"x", b"8"), (b"y", b"9"), timestamp_ms=stamp + 8, epoch=2)
    assert log.compact(now_ms=stamp)
    assert [offset for offset, _, _ in records_of(log)] == [0, 2, 5, 7, 8, 9]
    return log


def test_reading_an_offset_compacted_away_starts_at_the_next_batch(gapped_log):
    log = gapped_log
    assert read_header(log.read(1, 1 << 20)).base_offset == 2
    assert read_header(log.read(3, 1 << 20)).base_offset == 5  # segment [3] is gone: the gap spans segments
    assert read_header(log.read(6, 1 << 20)).base_offset == 7
    assert log.read(3, 1 << 20, max_offset=5) == b""
    assert read_header(log.read(3, 1 << 20, max_offset=6)).base_offset == 5
    with pytest.raises(OffsetOutOfRangeError):
        log.read(11, 1 << 20)


def test_offsets_timestamps_and_epochs_survive_compaction(gapped_log, clock):
    log = gapped_log
    assert (log.log_start_offset, log.log_end_offset) == (0, 10)
    assert log.offset_for_timestamp(clock.now_ms + 3) == (5, clock.now_ms + 4)
    assert log.offset_for_timestamp(clock.now_ms + 9) is None
    assert log.end_offset_for_epoch(1) == (1, 4)
    assert log.latest_epoch == 2


def test_a_compacted_log_reopens_whole_after_a_clean_shutdown_and_after_a_crash(gapped_log, log_directory, open_log):
    expected = records_of(gapped_log)
    assert gapped_log.recovery_point == 0  # no close, a crash: recovery scans every segment, gaps and all
    reopened = open_log(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert records_of(reopened) == expected
    reopened.close()
    reopened = open_log(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert records_of(reopened) == expected
    assert reopened.log_end_offset == 10


def test_appends_continue_after_compaction(gapped_log):
    assert append(gapped_log, (b"x", b"10"), epoch=2) == 10
    assert records_of(gapped_log)[-1] == (10, b"x", b"10")


def test_a_follower_of_a_compacted_log_takes_the_leader_gaps(gapped_log, tmp_path):
    follower = Log(tmp_path / "follower-0", LogConfig(compact=True, delete=False))
    for batch in batches_of(gapped_log):
        follower.append_as_follower(batch)
    assert records_of(follower) == records_of(gapped_log)
    assert follower.log_end_offset == 10
    with pytest.raises(OffsetOutOfRangeError):
        follower.append_as_follower(batches_of(gapped_log)[-1])  # offsets that go back


def test_truncation_into_a_gap_keeps_the_log_end_at_the_last_batch_kept(tmp_path, gapped_log):
    follower = Log(tmp_path / "follower-0", LogConfig(compact=True, delete=False))
    for batch in batches_of(gapped_log):
        follower.append_as_follower(batch)  # in one segment: [0-2 without 1] ... [8-9]
    follower.truncate_to(4)
    assert follower.log_end_offset == 3
    assert [offset for offset, _, _ in records_of(follower)] == [0, 2]


# The cleaner checkpoint and the dirty ratio


def test_a_clean_log_is_not_rewritten_until_enough_is_written_after_the_checkpoint(open_compacted, log_directory):
    log = open_compacted()
    for number in range(4):
        append(log, (b"k%d" % number, b"v" * 100))
    assert log.compact(now_ms=0)
    assert log.cleaned_offset == 3
    assert (log_directory / cleaner.CLEANER_CHECKPOINT_FILE).read_text() == "3\n"
    assert log.dirty_ratio(now_ms=0) == 0
    assert not log.compact(now_ms=0)
    append(log, (b"k4", b"v" * 100))  # one dirty segment of four: 0.25 < 0.5
    assert log.dirty_ratio(now_ms=0) == pytest.approx(0.25)
    assert not log.compact(now_ms=0)
    for number in range(5, 8):
        append(log, (b"k%d" % number, b"v" * 100))
    assert log.dirty_ratio(now_ms=0) == pytest.approx(4 / 7)
    assert log.compact(now_ms=0)
    assert log.cleaned_offset == 7


def test_the_checkpoint_survives_a_restart(open_compacted):
    log = open_compacted()
    for number in range(3):
        append(log, (b"k", b"%d" % number))
    assert log.compact(now_ms=0)
    log.close()
    reopened = open_compacted()
    assert reopened.cleaned_offset == 2
    assert not reopened.compact(now_ms=0)


def test_truncation_below_the_checkpoint_lowers_it(open_compacted):
    log = open_compacted()
    for number in range(4):
        append(log, (b"k%d" % number, b"v"))
    assert log.compact(now_ms=0)
    log.truncate_to(1)
    assert log.cleaned_offset == 1


def test_a_delete_only_log_is_never_compacted_and_a_compact_only_log_keeps_old_segments(open_log):
    deleting = open_log(segment_bytes=ONE_BATCH_PER_SEGMENT, retention_ms=1)
    append(deleting, (b"a", b"1"))
    append(deleting, (b"a", b"2"))
    assert deleting.dirty_ratio(now_ms=0) == 0 and not deleting.compact(now_ms=0)
    deleting.close()
    compacting = open_log(segment_bytes=ONE_BATCH_PER_SEGMENT, retention_ms=1, compact=True, delete=False)
    assert compacting.delete_old_segments(now_ms=10**13) == 0


# Crash safety


def crash_during_swap(monkeypatch, log: Log, renames_done: int) -> None:
    """Run a compaction whose swap stops (as a crash would) after ``renames_done`` of its four renames."""
    real_replace = os.replace
    calls = []

    def replace(source, target):
        if len(calls) == renames_done:
            raise OSError("crash")
        calls.append(source)
        real_replace(source, target)

    monkeypatch.setattr(cleaner.os, "replace", replace)
    with pytest.raises(StorageError):
        log.compact(now_ms=0)
    monkeypatch.setattr(cleaner.os, "replace", real_replace)


@pytest.mark.parametrize("renames_done, compacted", [(0, False), (1, True), (2, True), (3, True)])
def test_a_crash_at_any_swap_stage_leaves_the_old_or_the_cleaned_segment(
    monkeypatch, open_compacted, log_directory, renames_done, compacted
):
    log = open_compacted()
    append(log, (b"a", b"1" * 100), (b"b", b"1" * 100))
    append(log, (b"a", b"2"))
    append(log, (b"c", b"1"))
    before = records_of(log)
    crash_during_swap(monkeypatch, log, renames_done)
    reopened = open_compacted()  # the crashed Log is abandoned, unclosed
    assert files_with_suffix(log_directory, cleaner.CLEANED_SUFFIX, cleaner.SWAP_SUFFIX) == []
    after = [(1, b"b", b"1" * 100), (2, b"a", b"2"), (3, b"c", b"1")]
    assert records_of(reopened) == (after if compacted else before)
    assert reopened.compact(now_ms=0)  # no checkpoint was written: the log is cleaned (again)
    assert records_of(reopened) == after
    reopened.close()
    assert records_of(open_compacted()) == after


def test_half_written_cleaned_files_are_discarded_on_open(open_compacted, log_directory):
    log = open_compacted()
    append(log, (b"a", b"1"))
    append(log, (b"a", b"2"))
    log.close()
    for suffix in (".log", ".index", ".timeindex"):
        (log_directory / f"{0:020d}{suffix}{cleaner.CLEANED_SUFFIX}").write_bytes(b"torn")
    reopened = open_compacted()
    assert files_with_suffix(log_directory, cleaner.CLEANED_SUFFIX) == []
    assert [value for _, _, value in records_of(reopened)] == [b"1", b"2"]


def test_a_failed_compaction_leaves_no_cleaned_files(monkeypatch, open_compacted, log_directory):
    log = open_compacted()
    append(log, (b"a", b"1"))
    append(log, (b"a", b"2"))

    def fail(*arguments):
        raise OSError("disk full")

    monkeypatch.setattr(cleaner.LogSegment, "seal", fail)
    with pytest.raises(StorageError):
        log.compact(now_ms=0)
    assert files_with_suffix(log_directory, cleaner.CLEANED_SUFFIX) == []
    assert len(records_of(log)) == 2


# The log manager


def test_cleanup_compacts_one_log_per_call_the_dirtiest_first_and_applies_retention_to_delete_logs(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock)
    compact = LogConfig(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT, retention_ms=1)
    partly_dirty = manager.get_or_create("partly", 0, compact)
    for number in range(4):
        append(partly_dirty, (b"k%d" % number, b"v"))
    assert partly_dirty.compact(now_ms=0)  # nothing to remove; the checkpoint moves to 3
    for number in (0, 4, 5, 6):
        append(partly_dirty, (b"k%d" % number, b"v"))
    all_dirty = manager.get_or_create("all", 0, compact)
    for value in (b"1", b"2", b"3"):
        append(all_dirty, (b"k", value))
    deleting = manager.get_or_create("deleting", 0, LogConfig(segment_bytes=ONE_BATCH_PER_SEGMENT, retention_ms=1))
    for value in (b"1", b"2", b"3"):
        append(deleting, (b"k", value))
    assert partly_dirty.dirty_ratio(clock.now_ms) == pytest.approx(4 / 7)
    assert asyncio.run(manager.cleanup(now_ms=clock.now_ms)) == 2  # retention: the delete log only
    assert [value for _, _, value in records_of(all_dirty)] == [b"3"]
    assert len(records_of(partly_dirty)) == 8
    assert asyncio.run(manager.compact_dirtiest(now_ms=clock.now_ms)) == ("partly", 0)
    assert [offset for offset, _, _ in records_of(partly_dirty)] == [1, 2, 3, 4, 5, 6, 7]
    assert asyncio.run(manager.compact_dirtiest(now_ms=clock.now_ms)) is None


def test_the_manager_bounds_compaction_by_the_cleanable_end_offset(tmp_path, clock):
    manager = LogManager(tmp_path, clock_ms=clock, cleanable_end_offset=lambda topic, partition: 1)
    log = manager.get_or_create("t", 0, LogConfig(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT))
    for value in (b"1", b"2", b"3"):
        append(log, (b"k", value))
    assert asyncio.run(manager.compact_dirtiest(now_ms=0)) == ("t", 0)
    assert len(records_of(log)) == 3


def test_a_log_whose_compaction_fails_is_left_out_afterwards(tmp_path, clock, monkeypatch):
    manager = LogManager(tmp_path, clock_ms=clock)
    log = manager.get_or_create("t", 0, LogConfig(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT))
    for value in (b"1", b"2"):
        append(log, (b"k", value))

    def fail(*arguments):
        raise CorruptRecordError("a bad batch")

    monkeypatch.setattr(Log, "run_compaction", fail)
    assert asyncio.run(manager.compact_dirtiest(now_ms=0)) is None
    monkeypatch.undo()
    assert asyncio.run(manager.compact_dirtiest(now_ms=0)) is None
    assert len(records_of(log)) == 2


# Configuration


def test_log_config_compaction_defaults():
    config = LogConfig()
    assert (config.compact, config.delete) == (False, True)
    assert (config.delete_retention_ms, config.min_cleanable_dirty_ratio, config.min_compaction_lag_ms) == (
        DAY_MS, 0.5, 0)


@pytest.mark.parametrize("settings", [
    {"compact": False, "delete": False},
    {"delete_retention_ms": -1},
    {"min_cleanable_dirty_ratio": -0.1},
    {"min_cleanable_dirty_ratio": 1.5},
    {"min_cleanable_dirty_ratio": float("nan")},
    {"min_compaction_lag_ms": -1},
])
def test_log_config_refuses_bad_compaction_settings(settings):
    with pytest.raises(InvalidConfigError):
        LogConfig(**settings)


@pytest.mark.parametrize("policy, compact, delete", [
    ("delete", False, True),
    ("compact", True, False),
    ("compact,delete", True, True),
    ("delete,compact", True, True),
])
def test_cleanup_policies_map_to_the_log_config(policy, compact, delete):
    config = log_config(validate_topic_config({"cleanup.policy": policy, "min.cleanable.dirty.ratio": "0.1",
                                               "delete.retention.ms": 5, "min.compaction.lag.ms": "7"}))
    assert (config.compact, config.delete) == (compact, delete)
    assert (config.min_cleanable_dirty_ratio, config.delete_retention_ms, config.min_compaction_lag_ms) == (0.1, 5, 7)


def test_topic_config_defaults_of_the_compaction_settings():
    full = validate_topic_config({})
    assert (full["cleanup.policy"], full["delete.retention.ms"]) == ("delete", "86400000")
    assert (full["min.cleanable.dirty.ratio"], full["min.compaction.lag.ms"]) == ("0.5", "0")


@pytest.mark.parametrize("name, value", [
    ("cleanup.policy", "compacted"),
    ("cleanup.policy", ""),
    ("cleanup.policy", "compact,compact"),
    ("cleanup.policy", "delete,archive"),
    ("delete.retention.ms", "-1"),
    ("min.cleanable.dirty.ratio", "1.01"),
    ("min.cleanable.dirty.ratio", "half"),
    ("min.cleanable.dirty.ratio", "nan"),
    ("min.compaction.lag.ms", "-5"),
])
def test_topic_config_refuses_bad_compaction_values(name, value):
    with pytest.raises(InvalidConfigError):
        validate_topic_config({name: value})
