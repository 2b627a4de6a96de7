"""run_handler: poll, handle each record (or batch) with retries, dead-letter what keeps failing, commit.

The loop, on the caller's thread (the consumer's, as Kafka's consumer is
single-threaded):

- **Retries do not block the partition.** A record whose handler raises an
  exception of ``Retry.retry_on`` is *parked* in memory with a backoff
  timer and tried again when it is due; other records go on meanwhile.
  After ``Retry.attempts`` calls, or at once for any other exception, it
  is dead-lettered (client/dead_letter.py).
- **Records of one key keep their order.** While a record is parked or
  waiting for its dead-letter write, later records with the same key wait
  behind it and are handled, in offset order, once it is resolved; other
  keys are not held up. A keyless record is its own key. So a key is
  delayed by at most its own records' retry budgets (client/retry_policy.py).
- **Commits never pass an unresolved record.** Per partition, the offset
  committed is the lowest record not yet handled or dead-lettered
  (acknowledged with acks=all), else the offset after the last record
  taken (client/parked_records.py). The helper owns the commits: the
  consumer must have ``enable_auto_commit=False``. It commits every
  ``COMMIT_INTERVAL_S`` while records resolve, synchronously before a
  partition is revoked (wrapping the consumer's ``on_revoke``; the user's
  callback still runs, after) and when it returns.
- **Bounded memory.** A partition with ``max_parked`` unresolved records is
  paused (not fetched) until some resolve, so at most ``max_parked`` plus
  one poll's records (``max_poll_records``) wait per partition.
- **Batches** (``batch=True``): ``handle`` gets the ready records of one
  partition as a list. A failing batch is retried as a whole; when it runs
  out of attempts its records are handled one by one, once each, and those
  that still fail are dead-lettered (``dlq.attempts`` = batch attempts + 1).
- A record the consumer's deserializer fails on never reaches the handler:
  it is dead-lettered as stored (``dlq.error.type`` DeserializationError,
  ``dlq.attempts`` 0) and the consumer moves past it.
- **Dead letters once.** Before it handles a partition's first record, a
  run reads the partition's dead-letter copies back from the end and skips
  records a previous owner dead-lettered but did not commit (it crashed in
  between): see client/dead_letter.py.
- A dead-letter write that fails (after the producer's own retries) raises
  from run_handler; that record stays uncommitted.

Stopping: ``max_records`` records taken, or ``timeout`` seconds passed,
stops taking new ones; the records taken are finished (retries included)
before run_handler returns, so calling it in rounds never cuts a retry
budget short. ``stop`` (a threading.Event) set, or the consumer closed,
returns once the records of the current poll had their first attempt:
records still parked are not committed and are read again later (with the
records after them: at least once). Either way each partition's position
is moved back to its first unresolved record, so the same consumer can go
on (with run_handler or poll) without skipping anything.

HandlerStats counts records handled, handler calls that were retries (of a
record, of a batch, or a batch's records one by one), and records
dead-lettered (including those a previous owner had dead-lettered already).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from rill.client.consumer import Consumer
from rill.client.consumer_hooks import (
    bootstrap_of,
    check_handler_consumer,
    deserializes,
    group_of,
    is_closed,
    request_timeout_ms,
    subscribed_topics,
    wrap_on_revoke,
)
from rill.client.dead_letter import DeadLetterWriter
from rill.client.errors import ConsumerClosedError, DeserializationError, RillError
from rill.client.handler_arguments import check_handler_arguments
from rill.client.parked_records import Job, PartitionWork
from rill.client.partition_reader import PartitionReader
from rill.client.retry_policy import Retry
from rill.client.types import Record, TopicPartition

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.5
POLL_S_MAX = 0.2  # how often a stop event is looked at while nothing arrives
READY_BATCH_MAX = 100_000  # far above what max_poll_records and max_parked let wait


@dataclass
class HandlerStats:
    """What one run_handler call did: records handled, handler calls that were retries, records dead-lettered."""

    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0


def run_handler(consumer: Consumer, handle: Callable[[Any], object], *, retry: Retry | None = None,
                dead_letter_topic: str | None = None, max_records: int | None = None, timeout: float | None = None,
                batch: bool = False, producer: Any = None, stop: Any = None, max_parked: int = 1000) -> HandlerStats:
    """Poll ``consumer``, call ``handle(record)`` (``batch=True``: ``handle(records)``) and commit, with retries
    per ``retry`` (default ``Retry()``) and dead letters to ``dead_letter_topic`` (None: ``<topic>.dlq``).

    Runs until ``max_records`` records were taken and resolved, ``timeout`` seconds (then finishes the records
    taken), ``stop.is_set()``, or the consumer is closed. ``producer``: a Producer to write dead letters with
    (default: one of its own, acks=all). Bad arguments raise TypeError or ValueError; a consumer with
    auto-commit, without a group, or reading nothing InvalidConfigError; a source topic whose dead-letter
    name would be illegal InvalidTopicError. See the module docstring for ordering and commit rules.
    """
    check_handler_arguments(consumer, handle, retry, dead_letter_topic, max_records, timeout, batch, producer, stop,
                            max_parked)
    check_handler_consumer(consumer)
    return HandlerRun(consumer, handle, retry or Retry(), dead_letter_topic, max_records, timeout, batch, producer,
                      stop, max_parked).run()


class HandlerRun:
    """One run_handler call: its partitions' work, the dead-letter writer, the counters."""

    def __init__(self, consumer: Consumer, handle: Callable[[Any], object], retry: Retry,
                 dead_letter_topic: str | None, max_records: int | None, timeout: float | None, batch: bool,
                 producer: Any, stop: Any, max_parked: int):
        self._consumer = consumer
        self._handle = handle
        self._retry = retry
        self._room = math.inf if max_records is None else max_records
        self._deadline = None if timeout is None or math.isinf(timeout) else time.monotonic() + timeout
        self._batch = batch
        self._stop = stop
        self._max_parked = max_parked
        bootstrap = bootstrap_of(consumer)
        self._dead_letters = DeadLetterWriter(bootstrap, group_of(consumer), dead_letter_topic, producer,
                                              PartitionReader(bootstrap, request_timeout_ms(consumer)))
        self._deserializes = deserializes(consumer)
        self._work: dict[TopicPartition, PartitionWork] = {}
        self._sending: list[tuple[PartitionWork, Job, list[Record], list[Any]]] = []
        self._paused: set[TopicPartition] = set()
        self._draining = False
        self._last_commit = time.monotonic()
        self.stats = HandlerStats()
        for topic in subscribed_topics(consumer) | {tp.topic for tp in consumer.assignment()}:
            self._dead_letters.topic_for(topic)  # an illegal dead-letter name fails now, not at the first failure

    def run(self) -> HandlerStats:
        restore = wrap_on_revoke(self._consumer, self._on_revoke)
        try:
            self._loop()
        finally:
            restore()
            try:
                self._finish()
            finally:
                self._dead_letters.close()
        return self.stats

    # ---- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        polled = False
        while not (self._stop is not None and self._stop.is_set()):
            if polled and not self._draining and self._deadline is not None and time.monotonic() >= self._deadline:
                self._draining = True
            if self._draining and not self._unresolved():
                return
            self._pace()
            try:
                records = self._poll()
            except ConsumerClosedError:
                return
            polled = True
            self._take(records)
            self._retry_due()
            self._commit(force=False)

    def _poll(self) -> list[Record]:
        """The consumer's next records; a record its deserializer fails on is dead-lettered here."""
        try:
            return self._consumer.poll(self._poll_timeout())
        except DeserializationError as error:
            if error.topic is None or error.partition is None or error.offset is None:
                raise
            self._take_undecodable(TopicPartition(error.topic, error.partition), error.offset, error)
            return []

    def _poll_timeout(self) -> float:
        now = time.monotonic()
        wait = POLL_S_MAX
        dues = [due for work in self._work.values() if (due := work.next_due()) is not None]
        if dues:
            wait = min(wait, max(0.0, min(dues) - now))
        if self._deadline is not None and not self._draining:
            wait = min(wait, max(0.0, self._deadline - now))
        return wait

    def _unresolved(self) -> int:
        return sum(work.unresolved for work in self._work.values())

    def _pace(self) -> None:
        """Pause partitions with max_parked unresolved records (all of them while draining); resume the others."""
        assigned = self._consumer.assignment()
        self._paused &= assigned
        full = assigned if self._draining else {tp for tp, work in self._work.items()
                                                if work.unresolved >= self._max_parked and tp in assigned}
        if full - self._paused:
            self._consumer.pause(full - self._paused)
        if self._paused - full:
            self._consumer.resume(self._paused - full)
        self._paused = set(full)

    # ---- taking records -----------------------------------------------------------------

    def _take(self, records: list[Record]) -> None:
        by_partition: dict[TopicPartition, list[Record]] = {}
        for record in records:
            by_partition.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        for tp, polled in by_partition.items():
            work = self._work_for(tp, polled[0].offset)
            taken = polled[:0 if self._draining else int(min(self._room, len(polled)))]
            for record in taken:
                self._admit(work, tp, record)
            self._room -= len(taken)
            if self._room <= 0:
                self._draining = True
        self._work_off()

    def _work_for(self, tp: TopicPartition, first_offset: int) -> PartitionWork:
        work = self._work.get(tp)
        if work is None:
            work = self._work[tp] = PartitionWork(first_offset)
            self._dead_letters.topic_for(tp.topic)  # a pattern's topic with an illegal dead-letter name
        return work

    def _admit(self, work: PartitionWork, tp: TopicPartition, record: Record, ready: bool = True) -> bool:
        """Take the record; False if a previous owner of the partition already dead-lettered it."""
        if work.already_dead_lettered is None:
            work.already_dead_lettered = self._dead_letters.already_dead_lettered(tp, record.offset)
            if work.already_dead_lettered:
                work.dead_letter_high = max(work.already_dead_lettered)
                log.info("%s-%d: offsets %s were dead-lettered by a previous owner; not handling them again",
                         tp.topic, tp.partition, sorted(work.already_dead_lettered)[:20])
        if work.skip_if_dead_lettered(record.offset):
            work.next_offset = record.offset + 1
            self.stats.dead_lettered += 1
            return False
        work.admit(record, ready)
        return True

    def _take_undecodable(self, tp: TopicPartition, offset: int, error: DeserializationError) -> None:
        """Dead-letter the stored record the deserializer failed on, and move the consumer past it."""
        if self._draining:
            return  # its partition is paused now; it is read again next time
        work = self._work_for(tp, offset)
        stored = self._dead_letters.stored(tp, [offset]).get(offset)
        self._consumer.seek(tp, offset + 1)
        self._room -= 1
        self._draining = self._room <= 0
        if stored is None:  # deleted by retention since: nothing left to dead-letter
            work.next_offset = offset + 1
            return
        if self._admit(work, tp, stored, ready=False):
            job = Job([stored])
            job.error = error
            self._give_up(work, job)
        self._work_off()

    # ---- handling -------------------------------------------------------------------------

    def _work_off(self) -> None:
        """Run every ready record, then wait for the dead-letter writes (which frees keys), until all is quiet."""
        while True:
            for work in list(self._work.values()):
                self._run_ready(work)
            if not self._sending:
                return
            self._await_dead_letters()

    def _run_ready(self, work: PartitionWork) -> None:
        while records := work.take_ready(READY_BATCH_MAX if self._batch else 1):
            self._attempt(work, Job(records))

    def _retry_due(self) -> None:
        now = time.monotonic()
        for work in list(self._work.values()):
            for job in work.due_jobs(now):
                self._attempt(work, job)
        self._work_off()

    def _attempt(self, work: PartitionWork, job: Job) -> None:
        if job.attempts:
            self.stats.retried += 1
        try:
            self._handle(list(job.records) if self._batch else job.records[0])
        except Exception as error:  # the application's failure: retried or dead-lettered, never raised
            job.attempts += 1
            job.error = error
            if self._retry.retries(error, job.attempts):
                work.hold(job)
                work.park(job, time.monotonic() + self._retry.backoff_s(job.attempts))
            else:
                self._give_up(work, job)
            return
        job.attempts += 1
        self.stats.handled += len(job.records)
        work.resolve(job.records)
        work.release(job)

    def _give_up(self, work: PartitionWork, job: Job) -> None:
        """Dead-letter the job's records (a batch: those that fail again alone); its keys stay busy until acked."""
        work.hold(job)
        if self._batch and len(job.records) > 1:
            failed = self._one_by_one(work, job)
        else:
            failed = [(job.records[0], job.error, job.attempts)]
        if not failed:
            work.release(job)
            return
        tp = TopicPartition(failed[0][0].topic, failed[0][0].partition)
        stored = self._stored(tp, [record for record, _, _ in failed])
        futures = []
        for record, error, attempts in failed:
            work.dead_letter_high = max(work.dead_letter_high, record.offset)
            futures.append(self._dead_letters.send(record, stored[record.offset], error, attempts,
                                                   work.dead_letter_high))
        self._sending.append((work, job, [record for record, _, _ in failed], futures))

    def _one_by_one(self, work: PartitionWork, job: Job) -> list[tuple[Record, BaseException, int]]:
        """After a batch ran out of attempts: each record alone, once; the ones that fail, with their error."""
        failed = []
        for record in job.records:
            self.stats.retried += 1
            try:
                self._handle([record])
            except Exception as error:  # the application's failure: this record is dead-lettered
                failed.append((record, error, job.attempts + 1))
            else:
                self.stats.handled += 1
                work.resolve([record])
        return failed

    def _stored(self, tp: TopicPartition, records: list[Record]) -> dict[int, Record]:
        """The records as stored (bytes): as polled, unless the consumer deserializes (then read again)."""
        if not self._deserializes:
            return {record.offset: record for record in records}
        stored = self._dead_letters.stored(tp, [record.offset for record in records])
        for record in records:  # deleted by retention since: keep what can be kept
            if record.offset not in stored:
                stored[record.offset] = msgspec.structs.replace(
                    record, key=record.key if isinstance(record.key, bytes) else None,
                    value=record.value if isinstance(record.value, bytes) else None)
        return stored

    def _await_dead_letters(self) -> None:
        """Wait for every dead-letter write in flight (a failure raises: those records stay uncommitted)."""
        sending, self._sending = self._sending, []
        for work, job, records, futures in sending:
            for future in futures:
                future.result()
            work.resolve(records)
            work.release(job)
            self.stats.dead_lettered += len(records)

    # ---- commits ----------------------------------------------------------------------------

    def _commit(self, force: bool) -> None:
        if not force and time.monotonic() - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = time.monotonic()
        self._commit_partitions(set(self._work))

    def _commit_partitions(self, partitions: set[TopicPartition]) -> None:
        """Commit each partition's low mark where it moved; a failure is logged (the records come again)."""
        offsets = {tp: work.low_mark for tp, work in self._work.items()
                   if tp in partitions and work.low_mark > work.committed}
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except RillError as error:
            log.warning("run_handler: commit of %s failed: %s", offsets, error)
            return
        for tp, offset in offsets.items():
            self._work[tp].committed = offset

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Before a partition goes: commit what is resolved, forget the rest (its next owner handles it)."""
        self._commit_partitions(set(partitions))
        for tp in partitions:
            self._work.pop(tp, None)
            self._paused.discard(tp)

    def _finish(self) -> None:
        """Commit, move each position back to the first unresolved record, resume what the loop paused."""
        if is_closed(self._consumer):
            return
        self._commit(force=True)
        assigned = self._consumer.assignment()
        for tp, work in self._work.items():
            if tp in assigned and self._consumer.position(tp) != work.low_mark:
                self._consumer.seek(tp, work.low_mark)
        if self._paused & assigned:
            self._consumer.resume(self._paused & assigned)
