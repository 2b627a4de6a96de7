"""Retention (delete_old_segments), truncate_to and truncate_fully_and_start_at."""

from __future__ import annotations

import pytest
from rill.client.batch import encode_batch, iter_batches
from rill.client.errors import OffsetOutOfRangeError
from rill.node.log.leader_epoch_cache import EpochEntry

ONE_SIZE = len(encode_batch([b"x" * 40], timestamps=[0]))


def batch(timestamp_ms: int, *values: bytes) -> bytes:
    values = values or (b"x" * 40,)
    return encode_batch(list(values), timestamps=[timestamp_ms] * len(values))


def base_offsets(data: bytes) -> list[int]:
    return [header.base_offset for _, header in iter_batches(data)]


def test_retention_by_time_deletes_old_inactive_segments(open_log):
    log = open_log(segment_bytes=2 * ONE_SIZE, retention_ms=1000)
    for timestamp_ms in (100, 200, 300, 400, 5000, 5100, 9000):
        log.append(batch(timestamp_ms), leader_epoch=0)
    assert log.segment_count == 4  # [100,200] [300,400] [5000,5100] [9000]
    assert log.delete_old_segments(now_ms=5500) == 2
    assert (log.log_start_offset, log.segment_count) == (4, 2)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 1 << 20)
    assert base_offsets(log.read(4, 1 << 20))[0] == 4
    assert log.delete_old_segments(now_ms=5500) == 0


def test_retention_never_deletes_the_active_segment(open_log):
    log = open_log(retention_ms=10)
    log.append(batch(100), leader_epoch=0)
    assert log.delete_old_segments(now_ms=1_000_000) == 0
    assert log.log_end_offset == 1


def test_retention_by_time_is_off_at_minus_one(open_log):
    log = open_log(segment_bytes=ONE_SIZE, retention_ms=-1)
    for _ in range(3):
        log.append(batch(0), leader_epoch=0)
    assert log.delete_old_segments(now_ms=10**15) == 0


def test_retention_by_size_keeps_the_log_at_or_above_retention_bytes(open_log):
    log = open_log(segment_bytes=2 * ONE_SIZE, retention_bytes=3 * ONE_SIZE, retention_ms=-1)
    for _ in range(7):
        log.append(batch(0), leader_epoch=0)
    assert log.size_bytes == 7 * ONE_SIZE
    assert log.delete_old_segments(now_ms=0) == 2
    assert (log.size_bytes, log.log_start_offset) == (3 * ONE_SIZE, 4)


def test_retention_advances_the_epoch_cache_start(open_log):
    log = open_log(segment_bytes=2 * ONE_SIZE, retention_ms=1000)
    for timestamp_ms, epoch in ((0, 1), (0, 1), (0, 2), (9000, 2), (9000, 3)):
        log.append(batch(timestamp_ms), leader_epoch=epoch)
    log.delete_old_segments(now_ms=5000)
    assert log.log_start_offset == 2
    assert log._leader_epoch_cache.entries == (EpochEntry(2, 2), EpochEntry(3, 4))


def test_truncate_to_a_batch_boundary(open_log):
    log = open_log()
    for values in ([b"a", b"b"], [b"c"], [b"d", b"e"]):
        log.append(batch(0, *values), leader_epoch=0)
    log.truncate_to(3)
    assert log.log_end_offset == 3
    assert base_offsets(log.read(0, 1 << 20)) == [0, 2]
    assert log.append(batch(0, b"f"), leader_epoch=0).first_offset == 3


def test_truncate_inside_a_batch_cuts_at_its_start(open_log):
    log = open_log()
    log.append(batch(0, b"a", b"b"), leader_epoch=0)
    log.append(batch(0, b"c", b"d", b"e"), leader_epoch=0)
    log.truncate_to(3)
    assert log.log_end_offset == 2


def test_truncate_across_segments_deletes_the_later_ones(open_log, log_directory):
    log = open_log(segment_bytes=2 * ONE_SIZE)
    for _ in range(7):
        log.append(batch(0), leader_epoch=0)
    log.truncate_to(2)
    assert (log.segment_count, log.log_end_offset) == (2, 2)
    assert sorted(path.name for path in log_directory.glob("*.log")) == [
        "00000000000000000000.log",
        "00000000000000000002.log",
    ]
    assert log.append(batch(0), leader_epoch=0).first_offset == 2


def test_truncate_at_or_past_the_end_does_nothing(open_log):
    log = open_log()
    log.append(batch(0), leader_epoch=0)
    log.truncate_to(1)
    log.truncate_to(5)
    assert log.log_end_offset == 1


def test_truncate_lowers_the_recovery_point_and_survives_a_crash(open_log):
    log = open_log()
    for _ in range(4):
        log.append(batch(0), leader_epoch=0)
    log.flush()
    log.truncate_to(2)
    assert log.recovery_point == 2
    log.append(batch(0, b"new"), leader_epoch=0)
    reopened = open_log()  # no close: a crash
    assert (reopened.log_end_offset, reopened.recovery_point) == (3, 2)


def test_truncate_trims_the_epoch_cache(open_log):
    log = open_log()
    log.append(batch(0), leader_epoch=1)
    log.append(batch(0), leader_epoch=2)
    log.append(batch(0), leader_epoch=3)
    log.truncate_to(2)
    assert log.latest_epoch == 2
    assert log.end_offset_for_epoch(1) == (1, 1)


def test_truncate_recomputes_the_max_timestamp(open_log):
    log = open_log(index_interval_bytes=0)
    for timestamp_ms in (10, 20, 30, 40):
        log.append(batch(timestamp_ms), leader_epoch=0)
    log.truncate_to(2)
    assert log.offset_for_timestamp(15) == (1, 20)
    assert log.offset_for_timestamp(25) is None
    log.append(batch(25), leader_epoch=0)
    assert log.offset_for_timestamp(25) == (2, 25)


def test_truncate_below_the_log_start_restarts_the_log_there(open_log, log_directory):
    log = open_log(segment_bytes=ONE_SIZE, retention_bytes=ONE_SIZE, retention_ms=-1)
    for _ in range(4):
        log.append(batch(0), leader_epoch=1)
    log.delete_old_segments(now_ms=0)
    assert log.log_start_offset == 3
    log.truncate_to(1)
    assert (log.log_start_offset, log.log_end_offset, log.segment_count) == (1, 1, 1)
    assert log.latest_epoch is None
    assert [path.name for path in log_directory.glob("*.log")] == ["00000000000000000001.log"]


def test_truncate_fully_and_start_at_survives_a_reopen(open_log):
    log = open_log()
    for _ in range(3):
        log.append(batch(0), leader_epoch=0)
    log.truncate_fully_and_start_at(100)
    log.append(batch(0), leader_epoch=1)
    log.close()
    reopened = open_log()
    assert (reopened.log_start_offset, reopened.log_end_offset) == (100, 101)
    assert base_offsets(reopened.read(100, 1 << 20)) == [100]
