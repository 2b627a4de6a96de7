"""Flushing: flush(), flush.messages, flush.ms, and the recovery checkpoint they move."""

from __future__ import annotations

from rill.client.batch import encode_batch


def recovery_checkpoint(log_directory) -> int:
    return int((log_directory / "recovery-point-offset-checkpoint").read_text())


def test_flush_moves_the_recovery_checkpoint_to_the_log_end(open_log, log_directory):
    log = open_log()
    log.append(encode_batch([b"a", b"b"]), leader_epoch=0)
    assert log.recovery_point == 0
    log.flush()
    assert log.recovery_point == 2
    assert recovery_checkpoint(log_directory) == 2


def test_flush_messages_flushes_once_enough_records_are_appended(open_log, log_directory):
    log = open_log(flush_messages=3)
    log.append(encode_batch([b"a", b"b"]), leader_epoch=0)
    assert log.recovery_point == 0
    log.append(encode_batch([b"c"]), leader_epoch=0)
    assert log.recovery_point == 3
    assert recovery_checkpoint(log_directory) == 3


def test_flush_messages_of_one_flushes_every_append(open_log):
    log = open_log(flush_messages=1)
    for count in range(1, 4):
        log.append(encode_batch([b"a"]), leader_epoch=0)
        assert log.recovery_point == count


def test_flush_if_due_follows_flush_ms(open_log, clock):
    log = open_log(flush_ms=1000)
    assert not log.flush_if_due(clock.now_ms + 5000)  # nothing to flush
    log.append(encode_batch([b"a"]), leader_epoch=0)
    assert not log.flush_if_due(clock.now_ms + 999)
    assert log.flush_if_due(clock.now_ms + 1000)
    assert log.recovery_point == 1
    log.append(encode_batch([b"b"]), leader_epoch=0)
    assert not log.flush_if_due(clock.now_ms + 1500)
    assert log.flush_if_due(clock.now_ms + 2000)


def test_flush_if_due_never_flushes_without_flush_ms(open_log, clock):
    log = open_log()
    log.append(encode_batch([b"a"]), leader_epoch=0)
    assert not log.flush_if_due(clock.now_ms + 10**9)


def test_flush_covers_segments_rolled_since_the_last_flush(open_log):
    size_bytes = len(encode_batch([b"a"]))
    log = open_log(segment_bytes=size_bytes)
    for _ in range(3):
        log.append(encode_batch([b"a"]), leader_epoch=0)
    assert log.segment_count == 3
    log.flush()
    assert log.recovery_point == 3


def test_flush_makes_the_seal_of_a_segment_rolled_after_the_last_flush_durable(open_log, log_directory):
    size_bytes = len(encode_batch([b"a"], timestamps=[50]))
    log = open_log(segment_bytes=size_bytes, index_interval_bytes=10**6)
    log.append(encode_batch([b"a"], timestamps=[50]), leader_epoch=0)
    log.flush()
    time_index = log_directory / "00000000000000000000.timeindex"
    assert time_index.stat().st_size == 0
    log.append(encode_batch([b"b"], timestamps=[60]), leader_epoch=0)  # rolls, sealing the first segment
    sealed_entries = log._segments.first.time_index._file
    assert sealed_entries._dirty
    log.flush()
    assert not sealed_entries._dirty
    assert time_index.stat().st_size == 12, "the seal's entry is on disk once flushed"
