"""The idempotent producer's bookkeeping (client/idempotence.py), without brokers: sequences, the order
rule for retries, which errors retry, and the reset to sequence 0 under a bumped epoch."""

from __future__ import annotations

import itertools

import pytest
from rill.client import batch as batch_format
from rill.client.accumulator import ProducerBatch
from rill.client.errors import (
    InvalidProducerEpochError,
    NotLeaderError,
    OutOfOrderSequenceError,
    RecordTooLargeError,
    UnknownProducerIdError,
)
from rill.client.idempotence import (
    MAX_EPOCH,
    SEQUENCE_MODULUS,
    WINDOW_BATCHES,
    IdempotenceManager,
    next_sequence,
)
from rill.client.retry_backoff import RetryBackoff

_serials = itertools.count()


def new_batch(records: int = 3, topic: str = "t", partition: int = 0) -> ProducerBatch:
    batch = ProducerBatch(topic, partition, 0.0, 60.0, next(_serials))
    batch.values = [b"v%d" % i for i in range(records)]
    batch.keys = [None] * records
    batch.timestamps = list(range(records))
    return batch


def sent(batch: ProducerBatch) -> ProducerBatch:
    """The sender's part: encoded, one more attempt, in flight."""
    batch.encode(batch_format.COMPRESSION_NONE)
    batch.attempts += 1
    batch.in_flight = True
    return batch


def answered(*batches: ProducerBatch) -> None:
    for batch in batches:
        batch.in_flight = False


@pytest.fixture
def manager() -> IdempotenceManager:
    manager = IdempotenceManager(RetryBackoff(100, 1000, uniform=lambda low, high: 1.0))
    manager.set_producer_id(42, 0)
    return manager


def test_nothing_is_stamped_before_a_producer_id():
    manager = IdempotenceManager(RetryBackoff(100, 1000))
    batch = new_batch()
    assert not manager.has_producer_id and not manager.admit(batch) and batch.base_sequence == -1
    manager.set_producer_id(42, 0)
    assert manager.admit(batch) and (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (42, 0, 0)


def test_sequences_advance_by_record_count_per_partition_and_wrap(manager):
    first, second, other = new_batch(3), new_batch(5), new_batch(2, partition=1)
    assert all(manager.admit(batch) for batch in (first, second, other))
    assert (first.base_sequence, second.base_sequence, other.base_sequence) == (0, 3, 0)
    header = batch_format.check_batch(second.encode(batch_format.COMPRESSION_NONE))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 0, 3)
    assert next_sequence(SEQUENCE_MODULUS - 2, 5) == 3 and next_sequence(SEQUENCE_MODULUS - 1, 1) == 0


def test_a_retry_goes_only_as_its_partitions_first_unfinished_batch(manager):
    first, second = new_batch(), new_batch()
    manager.admit(first)
    manager.admit(second)
    sent(first), sent(second)
    answered(first, second)  # both failed (say NotLeader) and wait to be retried
    assert manager.retriable(first, NotLeaderError()) and manager.retriable(second, NotLeaderError())
    assert manager.admit(first) and not manager.admit(second)
    sent(first)
    answered(first)
    manager.acknowledged(first)
    assert manager.admit(second)


def test_at_most_five_batches_from_the_oldest_unfinished_one_acknowledged_ones_included(manager):
    """The leader remembers the last 5 batches: a batch whose answer was lost must still be among them
    when it is retried, however many later batches were acknowledged meanwhile."""
    batches = [new_batch() for _ in range(WINDOW_BATCHES)]
    for batch in batches:
        assert manager.admit(batch)
        sent(batch)
    answered(*batches)
    for batch in batches[1:]:
        manager.acknowledged(batch)
    assert not manager.admit(new_batch()), "the first batch's answer is lost; 4 later ones are stored"
    manager.acknowledged(batches[0])
    assert manager.admit(new_batch())


def test_out_of_order_retries_behind_an_earlier_batch_and_fails_without_one(manager):
    first, second = new_batch(), new_batch()
    manager.admit(first)
    manager.admit(second)
    assert manager.retriable(second, OutOfOrderSequenceError())  # the first is still unfinished
    manager.acknowledged(first)
    assert not manager.retriable(second, OutOfOrderSequenceError())
    assert not manager.retriable(second, InvalidProducerEpochError())


def test_unknown_producer_id_bumps_the_epoch_and_renumbers_from_zero_once_nothing_is_in_flight(manager):
    first, second, third = new_batch(2), new_batch(3), new_batch(4)
    for batch in (first, second, third):
        manager.admit(batch)
        sent(batch)
    answered(first)
    assert manager.retriable(first, UnknownProducerIdError())
    assert not manager.admit(first), "second and third are still in flight with the old numbers"
    answered(second, third)
    assert manager.retriable(second, OutOfOrderSequenceError())  # retried: the partition is being reset
    assert manager.admit(first)
    assert manager.epoch == 1
    stamps = [(b.producer_epoch, b.base_sequence) for b in (first, second, third)]
    assert stamps == [(1, 0), (1, 2), (1, 5)]
    header = batch_format.check_batch(first.encoded)  # the cached bytes were rebuilt, CRC included
    assert (header.producer_epoch, header.base_sequence) == (1, 0)
    fourth = new_batch()
    manager.admit(fourth)
    assert (fourth.producer_epoch, fourth.base_sequence) == (1, 9)


def test_a_batch_failed_for_good_resets_its_partition_and_others_move_to_the_new_epoch_lazily(manager):
    failed, busy = new_batch(), new_batch(partition=1)
    manager.admit(failed)
    manager.admit(busy)
    sent(busy)
    manager.failed(failed)  # e.g. RecordTooLargeError: its sequences are a gap now
    assert not RecordTooLargeError.retriable
    after = new_batch()
    assert manager.admit(after) and manager.epoch == 1
    assert (after.producer_epoch, after.base_sequence) == (1, 0)
    same_chain = new_batch(partition=1)
    manager.admit(same_chain)  # partition 1 still has a batch in flight: its chain goes on at epoch 0
    assert (same_chain.producer_epoch, same_chain.base_sequence) == (0, 3)
    answered(busy)
    manager.acknowledged(busy)
    manager.acknowledged(same_chain)
    moved = new_batch(partition=1)
    manager.admit(moved)
    assert (moved.producer_epoch, moved.base_sequence) == (1, 0)


def test_past_the_largest_epoch_the_producer_asks_for_a_new_id(manager):
    manager.set_producer_id(42, MAX_EPOCH)
    batch = new_batch()
    manager.admit(batch)
    assert manager.retriable(batch, UnknownProducerIdError())
    assert not manager.admit(batch) and not manager.has_producer_id and manager.lookup_due(0.0)
    manager.set_producer_id(43, 0)
    assert manager.admit(batch)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (43, 0, 0)


def test_the_lookup_backs_off_exponentially():
    lookup = IdempotenceManager(RetryBackoff(100, 1000, uniform=lambda low, high: 1.0))
    waits = []
    for _ in range(6):
        assert lookup.lookup_due(10.0)
        lookup.lookup_sent()
        assert not lookup.lookup_due(10.0)
        lookup.lookup_failed(NotLeaderError(), 10.0)
        waits.append(round(lookup.lookup_retry_at - 10.0, 3))
        lookup.lookup_retry_at = 0.0
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
