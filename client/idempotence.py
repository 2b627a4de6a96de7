"""The idempotent producer's state: its producer id and epoch, and each partition's sequence numbers.

Kafka's TransactionManager without transactions. The controller hands the
producer an id (InitProducerId, looked up by the sender with backoff). Each
batch gets, when the sender first drains it, the producer id, the epoch and
the partition's next sequence; sequences start at 0 per partition, advance
by the batch's record count and wrap from 2**31-1 to 0. The leader keeps
the last 5 batches per producer and partition, so a retried batch it stored
already is answered with its first offset instead of being written twice.

Order and duplicate detection per partition: a batch that was sent before
goes again only once it is its partition's oldest unfinished batch (Kafka's
rule), so a retry never overtakes an earlier batch; and at most 5 batches
are stamped from the oldest unfinished one on, acknowledged ones included,
so a retried batch the leader stored is always among the 5 it remembers.
(Kafka gets the second bound from answering each connection in order; a
Rill broker answers out of order and may lose an answer, so the producer
keeps it.) OutOfOrderSequenceError is retried while an earlier batch of the
partition is unfinished (it got ahead of a batch being retried); otherwise
it, and every other error not retriable, fails the batch.

A partition whose sequences can no longer continue (the broker forgot the
producer: UnknownProducerIdError; or a batch with a sequence failed for good,
leaving a gap) is reset, once none of its batches is in flight: the producer
bumps its epoch (KIP-360; a new producer id past the largest epoch) and the
partition's unfinished batches are renumbered from 0 under it. A partition
moves to a newer epoch lazily, when it has no stamped batch unfinished, since
the broker keeps an epoch per producer and partition.

Not thread-safe: owned by the sender thread. Work is per batch, never per record.
"""

from __future__ import annotations

import logging
from collections import deque

from rill.client.accumulator import ProducerBatch
from rill.client.errors import OutOfOrderSequenceError, RillError, UnknownProducerIdError
from rill.client.retry_backoff import RetryBackoff

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
MAX_EPOCH = (1 << 15) - 1  # the epoch is an int16 on the wire
SEQUENCE_MODULUS = 1 << 31  # sequences wrap from 2**31-1 to 0
WINDOW_BATCHES = 5  # the leader remembers the last 5 batches per producer and partition


def next_sequence(sequence: int, record_count: int) -> int:
    """The sequence after a batch of ``record_count`` records that starts at ``sequence``."""
    return (sequence + record_count) % SEQUENCE_MODULUS


class PartitionSequences:
    """One partition's sequence chain: the producer id and epoch it runs under, the next sequence to hand
    out, and its ``window``: the stamped batches from its oldest unfinished one on, in sequence order,
    acknowledged ones included (``done``) until every batch before them is finished too. The window
    never holds more than WINDOW_BATCHES, so the leader's memory of its last 5 batches covers every
    batch that may still be retried. ``reset_pending``: the chain cannot go on; it restarts at 0 under
    a newer epoch once none of its batches is in flight."""

    __slots__ = ("done", "epoch", "next_sequence", "producer_id", "reset_pending", "window")

    def __init__(self, producer_id: int, epoch: int):
        self.producer_id = producer_id
        self.epoch = epoch
        self.next_sequence = 0
        self.window: deque[ProducerBatch] = deque()
        self.done: set[ProducerBatch] = set()
        self.reset_pending = False

    def finish(self, batch: ProducerBatch) -> None:
        """The batch is acknowledged or failed: the window moves past the finished batches at its front."""
        window = self.window
        if window and window[0] is batch:
            window.popleft()  # the usual case: partitions acknowledge in order
            while window and window[0] in self.done:
                self.done.remove(window.popleft())
        elif batch in window:
            self.done.add(batch)


class IdempotenceManager:
    """Producer id, epoch and per-partition sequences of one producer; see the module docstring."""

    def __init__(self, backoff: RetryBackoff):
        self.producer_id = NO_PRODUCER_ID
        self.epoch = -1
        self._backoff = backoff
        self._partitions: dict[tuple[str, int], PartitionSequences] = {}
        self.lookup_in_flight = False
        self.lookup_retry_at = 0.0
        self.lookup_failures = 0
        self.lookup_error: RillError | None = None

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id != NO_PRODUCER_ID

    # ---- the producer id lookup (InitProducerId) -------------------------------------

    def lookup_due(self, now: float) -> bool:
        """Whether to ask the controller for a producer id now: none known, none asked, backoff over."""
        return self.producer_id == NO_PRODUCER_ID and not self.lookup_in_flight and now >= self.lookup_retry_at

    def lookup_sent(self) -> None:
        self.lookup_in_flight = True

    def lookup_failed(self, error: RillError, now: float) -> None:
        """The lookup failed (or could not be sent): try again after the n-th retry's backoff."""
        self.lookup_in_flight = False
        self.lookup_failures += 1
        self.lookup_error = error
        self.lookup_retry_at = now + self._backoff.delay_s(self.lookup_failures)

    def set_producer_id(self, producer_id: int, epoch: int) -> None:
        self.lookup_in_flight = False
        self.lookup_failures = 0
        self.lookup_error = None
        self.producer_id = producer_id
        self.epoch = epoch

    # ---- batches -----------------------------------------------------------------------

    def admit(self, batch: ProducerBatch) -> bool:
        """Whether the sender may put ``batch`` in a request now without breaking its partition's order or
        the broker's duplicate detection. A batch drained for the first time is stamped here with the
        producer id, the epoch and its partition's next sequence; a pending reset of the partition is done
        here, as soon as none of its batches is in flight."""
        key = (batch.topic, batch.partition)
        entry = self._partitions.get(key)
        if entry is not None and entry.reset_pending and not self._reset(entry):
            return False
        if batch.base_sequence >= 0:
            return batch.attempts == 0 or entry.window[0] is batch
        if self.producer_id == NO_PRODUCER_ID:
            return False
        if entry is None:
            entry = self._partitions[key] = PartitionSequences(self.producer_id, self.epoch)
        elif len(entry.window) >= WINDOW_BATCHES:
            return False
        elif not entry.window and (entry.producer_id != self.producer_id or entry.epoch != self.epoch):
            entry.producer_id, entry.epoch, entry.next_sequence = self.producer_id, self.epoch, 0
        batch.stamp(entry.producer_id, entry.epoch, entry.next_sequence)
        entry.next_sequence = next_sequence(entry.next_sequence, batch.record_count)
        entry.window.append(batch)
        return True

    def acknowledged(self, batch: ProducerBatch) -> None:
        entry = self._partitions.get((batch.topic, batch.partition))
        if entry is not None:
            entry.finish(batch)

    def failed(self, batch: ProducerBatch) -> None:
        """A stamped batch failed for good: its sequences are a gap the partition cannot continue after."""
        entry = self._partitions.get((batch.topic, batch.partition))
        if entry is not None:
            entry.finish(batch)
            entry.reset_pending = True

    def retriable(self, batch: ProducerBatch, error: RillError) -> bool:
        """Whether a stamped batch that got ``error`` goes again (within its delivery timeout)."""
        entry = self._partitions.get((batch.topic, batch.partition))
        if entry is None:
            return error.retriable
        if isinstance(error, UnknownProducerIdError):
            entry.reset_pending = True
            return True
        if isinstance(error, OutOfOrderSequenceError):
            return entry.reset_pending or entry.window[0] is not batch
        return error.retriable

    def _reset(self, entry: PartitionSequences) -> bool:
        """Restart the partition's sequences at 0 under a newer epoch; False while that cannot be done yet."""
        if any(batch.in_flight for batch in entry.window):
            return False
        if entry.producer_id == self.producer_id and entry.epoch == self.epoch:
            self._bump_epoch()
        if self.producer_id == NO_PRODUCER_ID:
            return False
        entry.producer_id, entry.epoch = self.producer_id, self.epoch
        entry.window = deque(batch for batch in entry.window if batch not in entry.done)
        entry.done.clear()
        sequence = 0
        for batch in entry.window:
            batch.stamp(self.producer_id, self.epoch, sequence)
            sequence = next_sequence(sequence, batch.record_count)
        entry.next_sequence = sequence
        entry.reset_pending = False
        return True

    def _bump_epoch(self) -> None:
        if self.epoch >= MAX_EPOCH:
            log.warning("producer id %d reached the largest epoch; asking for a new producer id", self.producer_id)
            self.producer_id, self.epoch = NO_PRODUCER_ID, -1
            return
        self.epoch += 1
        log.warning("producer id %d: epoch bumped to %d to restart a partition's sequences at 0",
                    self.producer_id, self.epoch)
