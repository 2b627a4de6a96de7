"""LeaderEpochCache: Kafka's endOffsetFor semantics, assignment, truncation, its checkpoint file."""

from __future__ import annotations

import pytest
from rill.client.batch import encode_batch
from rill.node.log.leader_epoch_cache import EpochEntry, LeaderEpochCache


@pytest.fixture
def cache(tmp_path) -> LeaderEpochCache:
    cache = LeaderEpochCache(tmp_path / "leader-epoch-checkpoint")
    for epoch, start_offset in ((1, 0), (3, 10), (5, 20)):
        cache.assign(epoch, start_offset)
    return cache


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (5, (5, 30)),  # the latest epoch ends at the log end offset
        (4, (3, 20)),  # unknown epoch between two: the one below, ending where the one above starts
        (3, (3, 20)),
        (2, (1, 10)),
        (1, (1, 10)),
        (0, (0, 0)),  # older than all: itself, ending where the first known starts
        (6, (-1, -1)),  # newer than all
        (-1, (-1, -1)),  # undefined
    ],
)
def test_end_offset_for_follows_kafka(cache, epoch, expected):
    assert cache.end_offset_for(epoch, log_end_offset=30) == expected


def test_end_offset_for_on_an_empty_cache_is_undefined(tmp_path):
    assert LeaderEpochCache(tmp_path / "cache").end_offset_for(0, 10) == (-1, -1)


def test_assigning_the_latest_epoch_again_changes_nothing(cache):
    cache.assign(5, 25)
    assert cache.entries[-1] == EpochEntry(5, 20)


def test_assignment_removes_entries_that_would_break_monotonicity(cache):
    cache.assign(4, 15)
    assert cache.entries == (EpochEntry(1, 0), EpochEntry(3, 10), EpochEntry(4, 15))


def test_truncate_from_end_forgets_epochs_starting_at_or_after(cache):
    cache.truncate_from_end(10)
    assert cache.entries == (EpochEntry(1, 0),)


def test_truncate_from_start_moves_the_first_kept_epoch(cache):
    cache.truncate_from_start(12)
    assert cache.entries == (EpochEntry(3, 12), EpochEntry(5, 20))


def test_the_checkpoint_file_round_trips_in_kafka_format(cache):
    assert cache.path.read_text() == "0\n3\n1 0\n3 10\n5 20\n"
    assert LeaderEpochCache.read(cache.path).entries == cache.entries


@pytest.mark.parametrize("text", ["", "0\n2\n1 0\n", "1\n1\n1 0\n", "0\n2\n3 10\n1 0\n", "0\n1\nx y\n"])
def test_an_unreadable_checkpoint_reads_as_missing(tmp_path, text):
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_text(text)
    assert LeaderEpochCache.read(path) is None


def test_log_end_offset_for_epoch(open_log):
    log = open_log()
    for epoch in (0, 0, 2, 2, 5):
        log.append(encode_batch([b"a", b"b"]), leader_epoch=epoch)
    assert log.latest_epoch == 5
    assert log.end_offset_for_epoch(5) == (5, 10)
    assert log.end_offset_for_epoch(2) == (2, 8)
    assert log.end_offset_for_epoch(1) == (0, 4)
    assert log.end_offset_for_epoch(0) == (0, 4)
    log.close()
    assert open_log().end_offset_for_epoch(1) == (0, 4)
