"""A log holds one open descriptor per segment (its .log file): the index files are opened only while
they are written, read, cut or flushed, so a broker's descriptors grow with segments, not three times.
Entries wait in memory until then; a cut or a failed write never leaves a partial or taken-back entry."""

from __future__ import annotations

import errno
import os

import pytest
from rill.client.batch import encode_batch
from rill.node.log import entry_file
from rill.node.log.entry_file import EntryFile


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


def test_a_cut_among_waiting_entries_touches_no_file(tmp_path):
    entries = EntryFile(tmp_path / "0.index", 8, create_new=True)
    for number in range(3):
        entries.append(number.to_bytes(8, "big"))
    entries.truncate_to_entries(1)  # the undo of a failed append: the entries after it never reach the file
    entries.close()
    assert (tmp_path / "0.index").read_bytes() == (0).to_bytes(8, "big")


def test_a_failed_write_leaves_the_file_as_it_was_and_the_entries_waiting(tmp_path, monkeypatch):
    entries = EntryFile(tmp_path / "0.index", 8, create_new=True)
    entries.append((1).to_bytes(8, "big"))
    entries.flush()

    def disk_full(descriptor: int, buffers) -> int:
        os.write(descriptor, b"\x00\x01\x02")  # part of an entry, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(entry_file, "write_fully", disk_full)
    entries.append((2).to_bytes(8, "big"))
    with pytest.raises(OSError):
        entries.flush()
    assert (tmp_path / "0.index").read_bytes() == (1).to_bytes(8, "big"), "cut back: no partial entry"
    entries.truncate_to_entries(1)  # the append is undone: the waiting entry goes
    monkeypatch.undo()
    entries.close()
    assert (tmp_path / "0.index").read_bytes() == (1).to_bytes(8, "big")
