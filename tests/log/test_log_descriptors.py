"""A log holds one open descriptor per segment (its .log file): the index files are opened only while
they are written, read, cut or flushed, so a broker's descriptors grow with segments, not three times."""

from __future__ import annotations

import os

from rill.client.batch import encode_batch


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_one_descriptor_per_segment(open_log):
    before = _open_descriptors()
    batch = encode_batch([b"order"], timestamps=[1_000])
    log = open_log(segment_bytes=len(batch), index_interval_bytes=1)
    for _ in range(5):
        log.append(encode_batch([b"order"], timestamps=[1_000]), leader_epoch=0)
    assert log.segment_count == 5
    assert _open_descriptors() - before == 5
    log.flush()
    assert _open_descriptors() - before == 5, "a flush closes the descriptors it took"
    log.close()
    assert _open_descriptors() == before


def test_index_entries_reach_the_files_by_close_and_are_read_back(open_log, log_directory):
    log = open_log(index_interval_bytes=1)
    for number in range(20):
        log.append(encode_batch([b"order-%d" % number], timestamps=[1_000 + number]), leader_epoch=0)
    entry_count = log._segments.first.offset_index.entry_count
    assert entry_count >= 19
    log.close()
    assert (log_directory / "00000000000000000000.index").stat().st_size == entry_count * 8
    reopened = open_log(index_interval_bytes=1)
    assert reopened.offset_for_timestamp(1_013) == (13, 1_013)
    reopened.close()
