"""Log.append / append_as_follower / read: offsets, limits, validation."""

from __future__ import annotations

import errno
import os

import pytest
from rill.client.batch import (
    COMPRESSION_LZ4,
    check_batch,
    decode_batch,
    encode_batch,
    iter_batches,
)
from rill.client.errors import (
    CorruptRecordError,
    FencedLeaderEpochError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
)
from rill.node.log.config import LogConfig
from rill.node.log.log import Log


def batch(*values: bytes, timestamp_ms: int = 1000) -> bytes:
    return encode_batch(list(values), timestamps=[timestamp_ms] * len(values))


def records_of(buffer: bytes) -> list[tuple[int, bytes]]:
    return [
        (record.offset, record.value)
        for position, _ in iter_batches(buffer)
        for record in decode_batch(buffer, "orders", 0, position)
    ]


def headers_of(buffer: bytes) -> list:
    return [header for _, header in iter_batches(buffer)]


def test_round_trip(open_log):
    log = open_log()
    log.append(batch(b"a", b"b"), leader_epoch=0)
    log.append(batch(b"c"), leader_epoch=0)
    assert records_of(log.read(0, 1 << 20)) == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert log.log_start_offset == 0
    assert log.log_end_offset == 3


def test_offsets_are_contiguous_across_batches_of_several_records(open_log):
    log = open_log()
    infos = [log.append(batch(*[b"v%d" % i for i in range(count)]), leader_epoch=0) for count in (3, 1, 5, 2)]
    assert [(info.first_offset, info.last_offset, info.record_count) for info in infos] == [
        (0, 2, 3), (3, 3, 1), (4, 8, 5), (9, 10, 2),
    ]
    assert [offset for offset, _ in records_of(log.read(0, 1 << 20))] == list(range(11))


def test_one_append_of_several_batches_assigns_each_its_offsets(open_log):
    log = open_log()
    log.append(batch(b"x"), leader_epoch=0)
    info = log.append(batch(b"a", b"b") + batch(b"c") + batch(b"d", b"e", b"f"), leader_epoch=0)
    assert (info.first_offset, info.last_offset, info.record_count) == (1, 6, 6)
    assert info.size_bytes == len(batch(b"a", b"b") + batch(b"c") + batch(b"d", b"e", b"f"))
    assert [header.base_offset for header in headers_of(log.read(1, 1 << 20))] == [1, 3, 4]


def test_append_info_reports_max_timestamp(open_log):
    log = open_log()
    records = encode_batch([b"a", b"b"], timestamps=[50, 70]) + encode_batch([b"c"], timestamps=[60])
    assert log.append(records, leader_epoch=0).max_timestamp == 70


def test_written_batches_keep_a_valid_crc_and_carry_the_leader_epoch(open_log):
    log = open_log()
    log.append(batch(b"a", b"b"), leader_epoch=7)
    log.append(batch(b"c"), leader_epoch=7)
    data = log.read(0, 1 << 20)
    headers = [check_batch(data, position) for position, _ in iter_batches(data)]
    assert [(header.base_offset, header.leader_epoch) for header in headers] == [(0, 7), (2, 7)]


def test_read_from_the_middle_of_a_batch_returns_that_whole_batch(open_log):
    log = open_log()
    log.append(batch(b"a"), leader_epoch=0)
    log.append(batch(b"b", b"c", b"d"), leader_epoch=0)
    data = log.read(2, 1 << 20)
    assert headers_of(data)[0].base_offset == 1
    assert records_of(data) == [(1, b"b"), (2, b"c"), (3, b"d")]


def test_read_stops_at_max_bytes_on_a_batch_boundary(open_log):
    log = open_log()
    sizes = [log.append(batch(b"x" * 100), leader_epoch=0).size_bytes for _ in range(5)]
    data = log.read(0, sizes[0] + sizes[1] + 10)
    assert [header.base_offset for header in headers_of(data)] == [0, 1]
    assert len(data) == sizes[0] + sizes[1]


def test_read_returns_at_least_one_whole_batch_even_over_max_bytes(open_log):
    log = open_log()
    size_bytes = log.append(batch(b"x" * 500), leader_epoch=0).size_bytes
    log.append(batch(b"y"), leader_epoch=0)
    data = log.read(0, 1)
    assert len(data) == size_bytes
    assert records_of(data) == [(0, b"x" * 500)]


def test_read_never_includes_a_batch_at_or_after_max_offset(open_log):
    log = open_log()
    for values in ([b"a", b"b"], [b"c", b"d"], [b"e"]):
        log.append(batch(*values), leader_epoch=0)
    assert [offset for offset, _ in records_of(log.read(0, 1 << 20, max_offset=2))] == [0, 1]
    # A batch that starts below max_offset is included whole.
    assert [offset for offset, _ in records_of(log.read(0, 1 << 20, max_offset=3))] == [0, 1, 2, 3]
    assert log.read(2, 1 << 20, max_offset=2) == b""
    assert log.read(4, 1 << 20, max_offset=2) == b""


def test_read_at_the_log_end_is_empty_and_past_it_out_of_range(open_log):
    log = open_log()
    assert log.read(0, 100) == b""
    log.append(batch(b"a"), leader_epoch=0)
    assert log.read(1, 100) == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(2, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)


def test_lz4_batches_are_stored_and_served_as_sent(open_log):
    log = open_log()
    values = [b"repeated value " * 20 for _ in range(30)]
    log.append(encode_batch(values, compression=COMPRESSION_LZ4), leader_epoch=0)
    assert [value for _, value in records_of(log.read(0, 1 << 20))] == values


def test_corrupt_batch_is_refused_and_nothing_is_written(open_log):
    log = open_log()
    log.append(batch(b"a"), leader_epoch=0)
    corrupt = bytearray(batch(b"b", b"c"))
    corrupt[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        log.append(batch(b"ok") + bytes(corrupt), leader_epoch=0)
    assert (log.log_end_offset, log.size_bytes) == (1, len(batch(b"a")))
    assert log.append(batch(b"d"), leader_epoch=0).first_offset == 1


def test_torn_batch_is_refused(open_log):
    log = open_log()
    with pytest.raises(CorruptRecordError):
        log.append(batch(b"a", b"b")[:-3], leader_epoch=0)
    assert (log.log_end_offset, log.size_bytes) == (0, 0)


def test_oversized_batch_is_refused_and_nothing_is_written(open_log):
    log = open_log(max_message_bytes=200)
    with pytest.raises(RecordTooLargeError):
        log.append(batch(b"small") + batch(b"x" * 300), leader_epoch=0)
    assert (log.log_end_offset, log.size_bytes) == (0, 0)


def test_append_of_no_batches_writes_nothing(open_log):
    log = open_log()
    log.append(batch(b"a"), leader_epoch=0)
    info = log.append(b"", leader_epoch=0)
    assert (info.first_offset, info.last_offset, info.record_count, info.size_bytes) == (1, 0, 0, 0)
    assert log.log_end_offset == 1


def test_append_with_an_older_leader_epoch_is_fenced(open_log):
    log = open_log()
    log.append(batch(b"a"), leader_epoch=3)
    with pytest.raises(FencedLeaderEpochError):
        log.append(batch(b"b"), leader_epoch=2)
    assert log.log_end_offset == 1


def test_follower_append_copies_the_leader_bytes_verbatim(tmp_path, open_log):
    leader = Log(tmp_path / "leader-0", LogConfig())
    leader.append(batch(b"a", b"b"), leader_epoch=1)
    leader.append(batch(b"c"), leader_epoch=2)
    fetched = leader.read(0, 1 << 20)
    follower = open_log()
    info = follower.append_as_follower(fetched)
    assert (info.first_offset, info.last_offset, info.record_count) == (0, 2, 3)
    assert follower.read(0, 1 << 20) == fetched
    assert follower.latest_epoch == 2
    assert follower.end_offset_for_epoch(1) == (1, 2)


def test_follower_append_must_start_at_the_log_end(tmp_path, open_log):
    leader = Log(tmp_path / "leader-0", LogConfig())
    leader.append(batch(b"a"), leader_epoch=0)
    leader.append(batch(b"b"), leader_epoch=0)
    follower = open_log()
    with pytest.raises(OffsetOutOfRangeError):
        follower.append_as_follower(leader.read(1, 1 << 20))
    assert follower.log_end_offset == 0


def test_follower_append_refuses_offsets_with_a_gap(open_log):
    follower = open_log()
    first = batch(b"a", b"b")  # base offset 0, as encoded
    second = batch(b"c")  # also base offset 0: does not follow offset 1
    with pytest.raises(CorruptRecordError):
        follower.append_as_follower(first + second)
    assert (follower.log_end_offset, follower.size_bytes) == (0, 0)


def test_a_failed_write_leaves_no_torn_batch_and_raises_storage_error(open_log, monkeypatch):
    log = open_log()
    log.append(batch(b"a"), leader_epoch=0)
    size_bytes = log.size_bytes
    real_writev = os.writev
    calls = []

    def write_half_then_fail(descriptor, buffers):
        calls.append(len(buffers))
        if len(calls) == 1:
            return os.write(descriptor, bytes(buffers[0][:7]))
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(os, "writev", write_half_then_fail)
    with pytest.raises(StorageError):
        log.append(batch(b"b"), leader_epoch=0)
    monkeypatch.setattr(os, "writev", real_writev)
    assert (log.size_bytes, log.log_end_offset) == (size_bytes, 1)
    assert log.append(batch(b"c"), leader_epoch=0).first_offset == 1
    assert records_of(log.read(0, 1 << 20)) == [(0, b"a"), (1, b"c")]


def test_reads_at_recent_batches_match_the_index_walk_and_follow_a_truncation(open_log):
    """Recently appended batches are found without the index (a remembered position): the same bytes as
    the index and header walk give, and after a cut and new appends at those offsets, the new batches."""
    log = open_log()
    for number in range(200):
        log.append(encode_batch([b"first-%d" % number]), leader_epoch=0)
    end = log.log_end_offset
    remembered = [log.read(offset, 1 << 20, end) for offset in range(end - 50, end)]
    log._segments.active._recent_batches.clear()
    walked = [log.read(offset, 1 << 20, end) for offset in range(end - 50, end)]
    assert [bytes(data) for data in remembered] == [bytes(data) for data in walked]
    log.truncate_to(end - 10)
    for number in range(10):
        log.append(encode_batch([b"second-%d" % number]), leader_epoch=1)
    assert [value for _, value in records_of(bytes(log.read(end - 10, 1 << 20, end)))] == [
        b"second-%d" % number for number in range(10)]
