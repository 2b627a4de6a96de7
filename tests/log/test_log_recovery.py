"""Opening a log: clean-shutdown marker, recovery checkpoint, torn and corrupt batches, rebuilt indexes."""

from __future__ import annotations

import os

from rill.client.batch import HEADER_SIZE, decode_batch, encode_batch, iter_batches
from rill.node.log.leader_epoch_cache import EpochEntry

FIRST_LOG = "00000000000000000000.log"
FIRST_INDEX = "00000000000000000000.index"
FIRST_TIME_INDEX = "00000000000000000000.timeindex"


def batch(*values: bytes, timestamp_ms: int = 1000) -> bytes:
    return encode_batch(list(values), timestamps=[timestamp_ms] * len(values))


def values_of(buffer: bytes) -> list[bytes]:
    return [
        record.value for position, _ in iter_batches(buffer) for record in decode_batch(buffer, "orders", 0, position)
    ]


def read_all(log) -> list[bytes]:
    """Every value in the log, reading batch by batch across segments."""
    values: list[bytes] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20)
        values.extend(values_of(data))
        offset = [header for _, header in iter_batches(data)][-1].next_offset
    return values


def fill(log, count: int, size_bytes: int = 50, timestamp_ms: int = 1000) -> list[int]:
    """Append ``count`` two-record batches; return the file position each starts at within the log."""
    positions = []
    for number in range(count):
        positions.append(log.size_bytes)
        prefix = b"%03d" % number
        log.append(batch(prefix + b"a" * size_bytes, prefix + b"b", timestamp_ms=timestamp_ms + number), 0)
    return positions


def flip_byte(path, position: int) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        original = file.read(1)
        file.seek(position)
        file.write(bytes([original[0] ^ 0x5A]))


def test_a_new_directory_opens_empty(open_log, log_directory):
    log = open_log()
    assert (log.log_start_offset, log.log_end_offset, log.segment_count, log.size_bytes) == (0, 0, 1, 0)
    assert (log_directory / FIRST_LOG).exists()


def test_close_flushes_and_writes_no_marker_of_its_own(open_log, log_directory):
    log = open_log()
    fill(log, 3)
    log.close()
    assert not (log_directory / "clean-shutdown").exists()  # the LogManager keeps one per data directory
    assert (log_directory / "recovery-point-offset-checkpoint").read_text().strip() == "6"
    reopened = open_log(clean_shutdown=True)
    assert (reopened.log_end_offset, reopened.recovery_point) == (6, 6)
    assert len(read_all(reopened)) == 6


def test_clean_shutdown_skips_the_scan(open_log, log_directory):
    log = open_log()
    positions = fill(log, 3)
    log.close()
    flip_byte(log_directory / FIRST_LOG, positions[1] + HEADER_SIZE + 2)
    trusted = open_log(clean_shutdown=True)
    assert trusted.log_end_offset == 6  # the flipped payload byte went unnoticed: no scan


def test_an_older_versions_marker_in_the_log_directory_counts_once(open_log, log_directory):
    log = open_log()
    positions = fill(log, 3)
    log.close()
    (log_directory / "clean-shutdown").write_bytes(b"")  # what an older version left at close
    flip_byte(log_directory / FIRST_LOG, positions[1] + HEADER_SIZE + 2)
    trusted = open_log()
    assert trusted.log_end_offset == 6, "trusted as a clean shutdown: no scan"
    assert not (log_directory / "clean-shutdown").exists(), "removed at open: a later crash is recovered"
    trusted.close_files()  # a crash
    assert open_log().log_end_offset == 2, "recovered: the flipped byte is found"


def test_crash_without_close_scans_from_the_recovery_point(open_log, log_directory):
    log = open_log()
    positions = fill(log, 3)
    # no close(): a crash
    flip_byte(log_directory / FIRST_LOG, positions[1] + HEADER_SIZE + 2)
    recovered = open_log()
    assert recovered.log_end_offset == 2
    assert recovered.size_bytes == positions[1]


def test_torn_last_batch_is_cut_and_appends_continue(open_log, log_directory):
    log = open_log()
    positions = fill(log, 4)
    os.truncate(log_directory / FIRST_LOG, positions[3] + 20)  # inside the last batch
    recovered = open_log()
    assert recovered.log_end_offset == 6
    assert recovered.size_bytes == positions[3]
    assert len(read_all(recovered)) == 6
    info = recovered.append(batch(b"after", b"crash"), leader_epoch=0)
    assert (info.first_offset, info.last_offset) == (6, 7)
    assert read_all(recovered)[-2:] == [b"after", b"crash"]


def test_torn_header_is_cut(open_log, log_directory):
    log = open_log()
    positions = fill(log, 2)
    os.truncate(log_directory / FIRST_LOG, positions[1] + 5)
    assert open_log().log_end_offset == 2


def test_flipped_payload_byte_cuts_the_log_from_that_batch_on(open_log, log_directory):
    one_size = len(batch(b"000" + b"a" * 50, b"000b"))
    log = open_log(segment_bytes=3 * one_size)
    fill(log, 9)
    assert log.segment_count == 3
    # batch 4 is the second batch of the second segment, offsets 8-9
    flip_byte(log_directory / "00000000000000000006.log", one_size + HEADER_SIZE + 3)
    recovered = open_log(segment_bytes=3 * one_size)
    assert recovered.log_end_offset == 8
    assert recovered.segment_count == 2
    assert not (log_directory / "00000000000000000012.log").exists()
    assert len(read_all(recovered)) == 8
    assert recovered.append(batch(b"next"), leader_epoch=0).first_offset == 8


def test_flushed_segments_before_the_recovery_point_are_not_scanned(open_log, log_directory):
    one_size = len(batch(b"000" + b"a" * 50, b"000b"))
    log = open_log(segment_bytes=2 * one_size)
    fill(log, 4)
    log.flush()
    fill(log, 1)
    assert log.recovery_point == 8
    flip_byte(log_directory / FIRST_LOG, HEADER_SIZE + 3)  # in the first, flushed, segment
    os.truncate(log_directory / "00000000000000000008.log", 30)  # tear the unflushed batch
    recovered = open_log(segment_bytes=2 * one_size)
    assert recovered.log_end_offset == 8


def test_corrupt_offset_index_is_rebuilt_on_a_clean_start(open_log, log_directory):
    log = open_log(index_interval_bytes=100)
    fill(log, 40)
    original_index = (log_directory / FIRST_INDEX).read_bytes()
    log.close()
    with open(log_directory / FIRST_INDEX, "r+b") as file:
        file.write(b"\xff" * 16)  # the first entries now decrease
    reopened = open_log(index_interval_bytes=100)
    assert (log_directory / FIRST_INDEX).read_bytes() == original_index
    segment = next(iter(reopened._segments))
    for offset in range(reopened.log_end_offset):
        _, header = segment.translate_offset(offset)
        assert header.base_offset <= offset < header.next_offset


def test_torn_tail_after_a_clean_shutdown_is_still_cut(open_log, log_directory):
    log = open_log(index_interval_bytes=100)
    positions = fill(log, 10)
    log.close()
    os.truncate(log_directory / FIRST_LOG, positions[9] + 30)
    reopened = open_log(clean_shutdown=True, index_interval_bytes=100)
    assert reopened.log_end_offset == 18
    assert reopened.size_bytes == positions[9]


def test_index_of_partial_entries_is_rebuilt(open_log, log_directory):
    log = open_log(index_interval_bytes=100)
    fill(log, 40)
    log.close()
    with open(log_directory / FIRST_INDEX, "ab") as file:
        file.write(b"\x00\x01\x02")
    reopened = open_log(index_interval_bytes=100)
    assert len(read_all(reopened)) == 80


def test_missing_indexes_are_rebuilt(open_log, log_directory):
    log = open_log(index_interval_bytes=100)
    fill(log, 40, timestamp_ms=5000)
    entry_count = next(iter(log._segments)).offset_index.entry_count
    log.close()
    (log_directory / FIRST_INDEX).unlink()
    (log_directory / FIRST_TIME_INDEX).unlink()
    reopened = open_log(index_interval_bytes=100)
    assert next(iter(reopened._segments)).offset_index.entry_count == entry_count
    assert reopened.offset_for_timestamp(5017) == (34, 5017)
    assert len(read_all(reopened)) == 80
    reopened.close()
    assert (log_directory / FIRST_INDEX).stat().st_size == entry_count * 8, "the rebuilt index is written"


def test_time_index_gives_the_max_timestamp_after_a_clean_start(open_log):
    log = open_log(index_interval_bytes=100)
    fill(log, 20, timestamp_ms=5000)
    log.close()
    reopened = open_log(index_interval_bytes=100)
    assert reopened.offset_for_timestamp(5019) == (38, 5019)
    assert reopened.offset_for_timestamp(5020) is None


def test_index_pointing_past_the_log_is_rebuilt(open_log, log_directory):
    log = open_log(index_interval_bytes=100)
    positions = fill(log, 40)
    log.close()
    os.truncate(log_directory / FIRST_LOG, positions[20])  # the log shrank behind the index's back
    reopened = open_log(index_interval_bytes=100)
    assert reopened.log_end_offset == 40
    assert len(read_all(reopened)) == 40


def test_missing_leader_epoch_checkpoint_is_rebuilt_from_batch_headers(open_log, log_directory):
    log = open_log()
    log.append(batch(b"a", b"b"), leader_epoch=1)
    log.append(batch(b"c"), leader_epoch=1)
    log.append(batch(b"d"), leader_epoch=4)
    log.close()
    (log_directory / "leader-epoch-checkpoint").unlink()
    reopened = open_log()
    assert reopened._leader_epoch_cache.entries == (EpochEntry(1, 0), EpochEntry(4, 3))
    assert (log_directory / "leader-epoch-checkpoint").exists()


def test_epoch_cache_loses_epochs_cut_by_recovery(open_log, log_directory):
    log = open_log()
    log.append(batch(b"a"), leader_epoch=1)
    position = log.size_bytes
    log.append(batch(b"b"), leader_epoch=2)
    os.truncate(log_directory / FIRST_LOG, position + 10)
    reopened = open_log()
    assert reopened.latest_epoch == 1
    assert reopened.end_offset_for_epoch(1) == (1, 1)


def test_leftover_files_are_removed(open_log, log_directory):
    log = open_log()
    fill(log, 2)
    log.close()
    (log_directory / "00000000000000000099.index").write_bytes(b"")
    (log_directory / "recovery-point-offset-checkpoint.tmp").write_bytes(b"12")
    open_log()
    assert not (log_directory / "00000000000000000099.index").exists()
    assert not (log_directory / "recovery-point-offset-checkpoint.tmp").exists()
