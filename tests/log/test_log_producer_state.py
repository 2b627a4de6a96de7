"""Idempotent producers on a partition log: duplicates stored once and answered with their original offsets,
sequence and epoch rules, the state rebuilt from snapshots and batch headers on open and after truncation,
expiry, the per-partition cap, and compaction keeping what the state is rebuilt from."""

from __future__ import annotations

import pytest
from rill.client.batch import decode_batch, encode_batch, iter_batches, read_header
from rill.client.errors import (
    DuplicateSequenceError,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)
from rill.node.log.config import LogConfig
from rill.node.log.log import Log
from rill.node.log.producer_state import (
    MAX_CACHED_BATCHES,
    SEQUENCE_WRAP,
    ProducerStateSettings,
    snapshot_file_name,
)

PRODUCER = 1000
OTHER_PRODUCER = 1001
ONE_BATCH_PER_SEGMENT = 14  # the smallest segment.bytes: every append rolls first


def batch(sequence: int, count: int = 1, producer_id: int = PRODUCER, epoch: int = 0, key: bytes | None = None
          ) -> bytes:
    """An idempotent producer's batch of ``count`` records starting at ``sequence``."""
    values = [b"v%d" % ((sequence + number) % SEQUENCE_WRAP) for number in range(count)]
    keys = None if key is None else [key] * count
    return encode_batch(values, keys, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)


def plain_batch(count: int = 1) -> bytes:
    return encode_batch([b"plain"] * count)


def values_of(log: Log) -> list[bytes]:
    data = log.read(log.log_start_offset, 1 << 24)
    return [record.value for position, _ in iter_batches(data) for record in decode_batch(data, "t", 0, position)]


@pytest.fixture
def open_producer_log(log_directory, clock):
    """open_producer_log(expiration_ms=..., max_producers=..., **log config): (re)open the log with producer
    settings of its own."""

    def open_with(expiration_ms: int = 86_400_000, max_producers: int = 10_000, **config) -> Log:
        return Log(log_directory, LogConfig(**config), clock_ms=clock,
                   producer_settings=ProducerStateSettings(expiration_ms, max_producers))

    return open_with


# Duplicates


def test_a_retried_batch_is_not_stored_again_and_gets_its_original_offsets(open_log):
    log = open_log()
    assert log.append(batch(0, count=3), leader_epoch=0).first_offset == 0
    log.append(plain_batch(), leader_epoch=0)
    assert log.append(batch(3, count=2), leader_epoch=0).first_offset == 4
    for sequence, count, first, last in ((0, 3, 0, 2), (3, 2, 4, 5)):
        retried = log.append(batch(sequence, count), leader_epoch=0)
        assert (retried.first_offset, retried.last_offset, retried.record_count) == (first, last, 0)
    assert log.log_end_offset == 6
    assert values_of(log) == [b"v0", b"v1", b"v2", b"plain", b"v3", b"v4"]
    assert log.append(batch(5), leader_epoch=0).first_offset == 6, "the sequence goes on after the retries"


def test_only_the_latest_five_batches_of_a_producer_are_recognised(open_log):
    log = open_log()
    for sequence in range(MAX_CACHED_BATCHES + 1):
        log.append(batch(sequence), leader_epoch=0)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch(0), leader_epoch=0)
    assert log.append(batch(1), leader_epoch=0).first_offset == 1
    assert log.log_end_offset == MAX_CACHED_BATCHES + 1


def test_a_retried_request_of_several_batches_is_answered_from_its_first(open_log):
    log = open_log()
    log.append(batch(0, count=2) + batch(2, count=3), leader_epoch=0)
    retried = log.append(batch(0, count=2) + batch(2, count=3), leader_epoch=0)
    assert (retried.first_offset, retried.last_offset) == (0, 4)
    assert log.log_end_offset == 5


def test_a_request_mixing_stored_and_new_batches_is_refused_whole(open_log):
    log = open_log()
    log.append(batch(0), leader_epoch=0)
    with pytest.raises(DuplicateSequenceError):
        log.append(batch(0) + batch(1), leader_epoch=0)
    with pytest.raises(DuplicateSequenceError):
        log.append(batch(0) + plain_batch(), leader_epoch=0)
    assert log.log_end_offset == 1


def test_batches_of_different_producers_and_plain_batches_mix_freely(open_log):
    log = open_log()
    info = log.append(batch(0) + plain_batch() + batch(0, producer_id=OTHER_PRODUCER) + batch(1), leader_epoch=0)
    assert (info.first_offset, info.last_offset) == (0, 3)
    assert log.append(batch(1, producer_id=OTHER_PRODUCER), leader_epoch=0).first_offset == 4


# Sequences and epochs


def test_a_gap_in_the_sequence_is_refused_and_nothing_is_stored(open_log):
    log = open_log()
    log.append(batch(0, count=2), leader_epoch=0)
    for sequence in (3, 1, 0):  # ahead, inside the stored batch, its start but shorter
        with pytest.raises(OutOfOrderSequenceError):
            log.append(batch(sequence), leader_epoch=0)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch(2) + batch(4), leader_epoch=0)  # the second batch of one request skips
    assert log.log_end_offset == 2
    assert log.append(batch(2), leader_epoch=0).first_offset == 2


def test_an_unknown_producer_must_start_at_sequence_zero(open_log):
    log = open_log()
    with pytest.raises(UnknownProducerIdError):
        log.append(batch(5), leader_epoch=0)
    assert log.log_end_offset == 0
    assert log.append(batch(0), leader_epoch=0).first_offset == 0


def test_epochs_never_go_back_and_a_new_epoch_starts_at_sequence_zero(open_log):
    log = open_log()
    log.append(batch(0, count=3, epoch=1), leader_epoch=0)
    with pytest.raises(InvalidProducerEpochError):
        log.append(batch(3, epoch=0), leader_epoch=0)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch(3, epoch=2), leader_epoch=0)
    assert log.append(batch(0, epoch=2), leader_epoch=0).first_offset == 3
    with pytest.raises(InvalidProducerEpochError):
        log.append(batch(0, count=3, epoch=1), leader_epoch=0)  # the old epoch's batch is no duplicate now
    assert log.log_end_offset == 4


def test_a_batch_without_a_sequence_or_epoch_is_refused(open_log):
    log = open_log()
    with pytest.raises(OutOfOrderSequenceError):
        log.append(encode_batch([b"x"], producer_id=PRODUCER, producer_epoch=0), leader_epoch=0)
    with pytest.raises(InvalidProducerEpochError):
        log.append(encode_batch([b"x"], producer_id=PRODUCER, base_sequence=0), leader_epoch=0)
    assert log.log_end_offset == 0


def test_sequences_wrap_from_the_largest_int32_to_zero(open_log):
    log = open_log()
    log.append_as_follower(batch(SEQUENCE_WRAP - 2, count=3))  # ends at sequence 0: ...-2, ...-1, 0
    assert log.append(batch(SEQUENCE_WRAP - 2, count=3), leader_epoch=0).first_offset == 0, "a duplicate"
    assert log.append(batch(1), leader_epoch=0).first_offset == 3


def test_a_follower_learns_every_producer_from_the_batches_it_copies(open_log, tmp_path):
    leader = Log(tmp_path / "leader-0", LogConfig())
    leader.append(batch(0, count=2), leader_epoch=4)
    leader.append(batch(2), leader_epoch=4)
    follower = open_log()
    follower.append_as_follower(leader.read(0, 1 << 20))
    assert follower.append(batch(2), leader_epoch=5).first_offset == 2, "the new leader answers the retry"
    assert follower.append(batch(3), leader_epoch=5).first_offset == 3


# Snapshots and rebuilding


def fill_segments(log: Log, batches: int) -> None:
    for sequence in range(batches):
        log.append(batch(sequence), leader_epoch=0)


def test_after_a_clean_close_the_state_comes_from_the_snapshot_at_the_log_end(open_producer_log, log_directory):
    log = open_producer_log()
    fill_segments(log, 3)
    log.close()
    assert (log_directory / snapshot_file_name(3)).exists()
    reopened = open_producer_log()
    assert reopened.append(batch(2), leader_epoch=0).first_offset == 2
    assert reopened.append(batch(3), leader_epoch=0).first_offset == 3


def test_restarts_leave_one_snapshot_that_is_not_named_after_a_segment(open_producer_log, log_directory):
    log = open_producer_log()
    for sequence in range(3):
        log.append(batch(sequence), leader_epoch=0)
        log.close()
        log = open_producer_log()
    assert [path.name for path in log_directory.glob("*.snapshot")] == [snapshot_file_name(3)]
    assert log.append(batch(2), leader_epoch=0).first_offset == 2


def test_after_a_crash_the_state_is_the_last_roll_snapshot_plus_the_batches_after_it(open_producer_log,
                                                                                    log_directory):
    log = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)
    fill_segments(log, 4)
    log.append(batch(0, producer_id=OTHER_PRODUCER), leader_epoch=0)
    assert [int(path.stem) for path in sorted(log_directory.glob("*.snapshot"))] == [1, 2, 3, 4]
    (log_directory / snapshot_file_name(4)).write_bytes(b"torn")  # the newest is damaged: the one before serves
    reopened = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)  # no close: no clean-shutdown marker
    assert not (log_directory / snapshot_file_name(4)).exists(), "a damaged snapshot is deleted"
    assert reopened.append(batch(3), leader_epoch=0).first_offset == 3
    assert reopened.append(batch(0, producer_id=OTHER_PRODUCER), leader_epoch=0).first_offset == 4
    assert reopened.append(batch(4), leader_epoch=0).first_offset == 5


def test_without_any_snapshot_the_state_is_rebuilt_from_the_whole_log(open_producer_log, log_directory):
    log = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)
    fill_segments(log, 3)
    for path in log_directory.glob("*.snapshot"):
        path.unlink()
    reopened = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert reopened.append(batch(0), leader_epoch=0).first_offset == 0
    assert reopened.append(batch(3), leader_epoch=0).first_offset == 3


def test_truncation_rebuilds_the_state_of_the_log_that_stays(open_producer_log, log_directory):
    log = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)
    log.append(batch(0, count=2), leader_epoch=0)
    log.append(batch(2, count=2), leader_epoch=0)
    log.append(batch(4), leader_epoch=1)
    log.truncate_to(2)
    assert sorted(int(path.stem) for path in log_directory.glob("*.snapshot")) == [2], \
        "snapshots above the new end go"
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch(4), leader_epoch=2)
    assert log.append(batch(2, count=2), leader_epoch=2).first_offset == 2, "no duplicate: it was cut"
    assert log.append(batch(0, count=2), leader_epoch=2).first_offset == 0, "still a duplicate"
    reopened = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert reopened.append(batch(4), leader_epoch=2).first_offset == 4


def test_a_truncation_that_cuts_no_producer_batch_keeps_the_state(open_log):
    log = open_log()
    log.append(batch(0), leader_epoch=0)
    log.append(plain_batch(), leader_epoch=0)
    log.truncate_to(1)
    assert log.append(batch(0), leader_epoch=0).first_offset == 0
    assert log.append(batch(1), leader_epoch=0).first_offset == 1


def test_emptying_the_log_forgets_every_producer_and_snapshot(open_producer_log, log_directory):
    log = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT)
    fill_segments(log, 3)
    log.truncate_fully_and_start_at(10)
    assert not list(log_directory.glob("*.snapshot*"))
    with pytest.raises(UnknownProducerIdError):
        log.append(batch(3), leader_epoch=0)
    assert log.append(batch(0), leader_epoch=0).first_offset == 10


def test_retention_deletes_the_snapshots_of_the_segments_it_deletes(open_producer_log, log_directory):
    log = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT, retention_bytes=1)
    fill_segments(log, 4)
    assert log.delete_old_segments(now_ms=0) == 3
    assert log.log_start_offset == 3
    assert sorted(int(path.stem) for path in log_directory.glob("*.snapshot*")) == [3]
    assert log.append(batch(4), leader_epoch=0).first_offset == 4, "the state outlives the segments"
    reopened = open_producer_log(segment_bytes=ONE_BATCH_PER_SEGMENT, retention_bytes=1)
    assert reopened.append(batch(4), leader_epoch=0).first_offset == 4
    assert reopened.append(batch(5), leader_epoch=0).first_offset == 5


# Bounds


def test_an_idle_producer_expires(open_producer_log, clock):
    log = open_producer_log(expiration_ms=60_000)
    log.append(batch(0), leader_epoch=0)
    clock.now_ms += 30_000
    log.append(batch(0, producer_id=OTHER_PRODUCER), leader_epoch=0)
    clock.now_ms += 30_000
    assert log.remove_expired_producers(clock.now_ms) == 1
    with pytest.raises(UnknownProducerIdError):
        log.append(batch(1), leader_epoch=0)
    assert log.append(batch(1, producer_id=OTHER_PRODUCER), leader_epoch=0).first_offset == 2
    assert log.append(batch(0, epoch=1), leader_epoch=0).first_offset == 3, "the expired producer starts over"


def test_past_the_cap_the_least_recently_written_producer_is_dropped(open_producer_log):
    log = open_producer_log(max_producers=2)
    for producer_id in (1, 2):
        log.append(batch(0, producer_id=producer_id), leader_epoch=0)
    log.append(batch(1, producer_id=1), leader_epoch=0)  # 1 is now the most recently written
    log.append(batch(0, producer_id=3), leader_epoch=0)
    assert len(log.producer_state) == 2
    with pytest.raises(UnknownProducerIdError):
        log.append(batch(1, producer_id=2), leader_epoch=0)
    assert log.append(batch(2, producer_id=1), leader_epoch=0).first_offset == 4


# Compaction


def test_compaction_keeps_producer_fields_and_sequences_across_the_wrap(open_log):
    log = open_log(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT)
    values = [letter * 500 for letter in (b"a", b"b", b"c", b"d")]  # big enough that splitting shrinks the batch
    wrapping = encode_batch(values, [b"1", b"2", b"3", b"4"], producer_id=PRODUCER,
                            producer_epoch=3, base_sequence=SEQUENCE_WRAP - 2)
    log.append_as_follower(wrapping)
    log.append(encode_batch([b"new"], [b"1"]), leader_epoch=0)
    log.append(encode_batch([b"new"], [b"3"]), leader_epoch=0)
    log.append(plain_batch(), leader_epoch=0)  # the active segment
    assert log.compact(now_ms=0)
    data = log.read(0, 1 << 20)
    headers = [header for _, header in iter_batches(data)]
    assert [(h.base_offset, h.producer_id, h.producer_epoch, h.base_sequence) for h in headers[:2]] == [
        (1, PRODUCER, 3, SEQUENCE_WRAP - 1), (3, PRODUCER, 3, 1)]
    assert read_header(data, 0).record_count == 1


def test_a_segment_that_compaction_empties_takes_its_snapshot_along(open_log, log_directory):
    log = open_log(compact=True, delete=False, segment_bytes=ONE_BATCH_PER_SEGMENT)
    for value in (b"1", b"2", b"3"):
        log.append(encode_batch([value], [b"key"]), leader_epoch=0)
    log.append(plain_batch(), leader_epoch=0)  # the active segment
    assert sorted(int(path.stem) for path in log_directory.glob("*.snapshot")) == [1, 2, 3]
    assert log.compact(now_ms=0)
    assert log.segment_count == 3, "the first segment stays, emptied; the second goes"
    assert sorted(int(path.stem) for path in log_directory.glob("*.snapshot")) == [2, 3]
