"""Segment rolling, the sparse offset index and offset_for_timestamp."""

from __future__ import annotations

import random

from rill.client.batch import encode_batch, iter_batches
from rill.node.log.segment import LogSegment


def batch(*values: bytes, timestamp_ms: int = 1000) -> bytes:
    return encode_batch(list(values), timestamps=[timestamp_ms] * len(values))


def segments_of(log) -> list[LogSegment]:
    return list(log._segments)


def test_rolls_before_the_active_segment_would_pass_segment_bytes(open_log, log_directory):
    one = batch(b"x" * 100)
    log = open_log(segment_bytes=3 * len(one))
    for _ in range(10):
        log.append(one, leader_epoch=0)
    assert log.segment_count == 4
    assert [segment.size_bytes for segment in segments_of(log)] == [3 * len(one)] * 3 + [len(one)]
    assert sorted(path.name for path in log_directory.glob("*.log")) == [
        "00000000000000000000.log",
        "00000000000000000003.log",
        "00000000000000000006.log",
        "00000000000000000009.log",
    ]
    for offset in range(10):
        assert next(iter_batches(log.read(offset, 1 << 20)))[1].base_offset == offset


def test_an_append_larger_than_segment_bytes_goes_whole_into_a_new_segment(open_log):
    log = open_log(segment_bytes=200)
    log.append(batch(b"a"), leader_epoch=0)
    log.append(batch(b"x" * 500), leader_epoch=0)
    assert [segment.base_offset for segment in segments_of(log)] == [0, 1]
    assert log.read(1, 10) != b""


def test_rolls_when_segment_ms_has_passed_since_the_segment_was_created(open_log, clock):
    log = open_log(segment_ms=1000)
    log.append(batch(b"a"), leader_epoch=0)
    clock.now_ms += 1000
    log.append(batch(b"b"), leader_epoch=0)
    assert log.segment_count == 1
    clock.now_ms += 1
    log.append(batch(b"c"), leader_epoch=0)
    assert log.segment_count == 2
    assert segments_of(log)[-1].created_ms == clock.now_ms


def test_an_empty_segment_never_rolls(open_log, clock):
    log = open_log(segment_ms=1)
    clock.now_ms += 10
    log.append(batch(b"a"), leader_epoch=0)
    assert log.segment_count == 1


def test_rolls_when_the_index_would_be_full(open_log):
    log = open_log(index_interval_bytes=0, segment_index_bytes=24)  # 3 offset entries, 2 time entries
    for timestamp_ms in range(10):
        log.append(batch(b"a", timestamp_ms=timestamp_ms), leader_epoch=0)
    assert log.segment_count > 1
    for segment in segments_of(log)[:-1]:
        assert segment.offset_index.entry_count <= segment.offset_index.max_entries


def test_sparse_index_lookup_matches_a_linear_scan(open_log):
    generator = random.Random(7)
    log = open_log(index_interval_bytes=300)
    for _ in range(400):
        count = generator.randint(1, 6)
        log.append(batch(*[bytes(generator.randint(1, 80)) for _ in range(count)]), leader_epoch=0)
    segment = segments_of(log)[0]
    assert 0 < segment.offset_index.entry_count < 400
    expected = {}
    for position, header in iter_batches(segment.read(0, segment.size_bytes)):
        for offset in range(header.base_offset, header.next_offset):
            expected[offset] = position
    for offset in range(log.log_end_offset):
        position, header = segment.translate_offset(offset)
        assert position == expected[offset]
        assert header.base_offset <= offset < header.next_offset
    assert segment.translate_offset(log.log_end_offset) is None


def brute_force_offset_for_timestamp(batches: list[list[int]], target_ms: int) -> tuple[int, int] | None:
    offset = 0
    for timestamps in batches:
        for timestamp_ms in timestamps:
            if timestamp_ms >= target_ms:
                return offset, timestamp_ms
            offset += 1
    return None


def test_offset_for_timestamp_finds_the_exact_record(open_log):
    generator = random.Random(11)
    log = open_log(segment_bytes=4000, index_interval_bytes=200)
    batches = []
    base_ms = 10_000
    for _ in range(150):
        count = generator.randint(1, 5)
        timestamps = [base_ms + generator.randint(-50, 50) for _ in range(count)]
        base_ms += generator.randint(0, 20)
        batches.append(timestamps)
        log.append(encode_batch([b"v"] * count, timestamps=timestamps), leader_epoch=0)
    assert log.segment_count > 3
    highest_ms = max(max(timestamps) for timestamps in batches)
    for target_ms in range(9_900, highest_ms + 5, 7):
        assert log.offset_for_timestamp(target_ms) == brute_force_offset_for_timestamp(batches, target_ms)
    assert log.offset_for_timestamp(highest_ms) is not None
    assert log.offset_for_timestamp(highest_ms + 1) is None
