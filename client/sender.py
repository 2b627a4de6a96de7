"""The producer's background sender thread: drains ready batches to partition leaders.

Per broker it keeps up to ``max_in_flight`` produce requests outstanding,
each carrying at most one batch per partition, a partition's batches in
order. Retriable errors (``RillError.retriable``: NotLeader, UnknownTopic,
NotEnoughReplicas, timeouts, dead brokers, ...) retry the batch, the n-th
retry after ``min(retry_backoff_ms * 2**(n-1), retry_backoff_max_ms)`` with
20% jitter (client/retry_backoff.py), the errors that mean stale metadata
refreshing it first; when ``delivery_timeout_ms`` (counted from the batch's
first record) runs out the batch fails with its last error, or
RequestTimeoutError if it never got one. Other errors fail the batch at once.
A retried batch goes before its partition's later batches.

With idempotence (client/idempotence.py) the thread first gets a producer
id from the controller, stamps each batch with it and a sequence when it is
first drained, sends a retried batch only once it is its partition's oldest
unfinished one, and retries the OutOfOrderSequence answers of batches that
got ahead of it. The thread owns its NetworkClient and the producer's
ClusterMetadata; other threads only read ``partition_counts``.

The thread does not die on an unexpected error (a bug): it logs the
traceback, fails the batches it held with ClientInternalError, starts over
with a new NetworkClient and goes on. Only after MAX_FAILURES_IN_A_ROW such
errors without a clean round between them does it stop for good; then
``fatal_error`` is set and the accumulator refuses every later record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import zmq
from rill.client import protocol
from rill.client.accumulator import ProducerBatch, RecordAccumulator
from rill.client.errors import (
    BrokerNotAvailableError,
    ClientInternalError,
    FencedLeaderEpochError,
    NotControllerError,
    NotLeaderError,
    ProducerClosedError,
    RequestTimeoutError,
    RillError,
    StorageError,
    UnknownTopicError,
    error_for_code,
)
from rill.client.idempotence import IdempotenceManager
from rill.client.metadata import ClusterMetadata
from rill.client.network import CONNECT_TIMEOUT_MS, NetworkClient
from rill.client.retry_backoff import RetryBackoff

log = logging.getLogger(__name__)

IDLE_POLL_MS = 100
HAND_OVER_POLL_MS = 1  # acks=0: how often to look whether ZeroMQ has handed a request to its connection
MAX_FAILURES_IN_A_ROW = 10
FAILURE_BACKOFF_S = 0.05
CLOSED_REASON = "the producer was closed before the record was sent"
METADATA_MAX_AGE_S = 300.0
METADATA_REFRESH_BACKOFF_S = 0.05
# Errors after which the client's view of leaders (or of the controller) may be out of date.
METADATA_ERRORS = (NotLeaderError, UnknownTopicError, BrokerNotAvailableError, RequestTimeoutError,
                   FencedLeaderEpochError, StorageError, NotControllerError)


@dataclass(frozen=True)
class SenderConfig:
    acks: int
    compression: int
    max_in_flight: int
    max_request_size: int
    request_timeout_ms: int
    retry_backoff_ms: int
    client_id: str
    retry_backoff_max_ms: int = 1000
    enable_idempotence: bool = False  # the producer's setting, already off where acks or in-flight forbid it


class Sender(threading.Thread):
    """Moves batches from the accumulator to brokers and completes their futures."""

    def __init__(self, config: SenderConfig, accumulator: RecordAccumulator, metadata: ClusterMetadata,
                 context: zmq.Context, wake_address: str):
        super().__init__(name="rill-producer-sender", daemon=True)
        self.config = config
        self.accumulator = accumulator
        self.metadata = metadata
        self.partition_counts: dict[str, int] = {}
        self.metadata_changed = threading.Condition()
        self.wanted_topics: set[str] = set()
        self._context = context
        self._wake_address = wake_address
        self._waiting: list[ProducerBatch] = []
        self._in_flight: set[ProducerBatch] = set()  # batches sent and not yet answered (nor expired)
        self._blocked: set[tuple[str, int]] = set()  # partitions with batches waiting: their open batch fills up
        self._leaderless: set[str] = set()  # topics of waiting batches without a known leader at the last send
        self._metadata_stale = False
        self._last_refresh_attempt = 0.0
        self._closing = False
        self._force_close = False
        self._backoff = RetryBackoff(config.retry_backoff_ms, config.retry_backoff_max_ms)
        self._idempotence = self._new_idempotence()
        self._controller_connecting_since: float | None = None
        self.asleep = False
        self.fatal_error: ProducerClosedError | None = None  # set when the thread stopped for good on errors

    # ---- called from other threads --------------------------------------------

    def initiate_close(self, force: bool) -> None:
        self._closing = True
        self._force_close = self._force_close or force

    # ---- the thread -------------------------------------------------------------

    def run(self) -> None:
        reason = CLOSED_REASON
        try:
            wake = self._context.socket(zmq.PULL)
            try:
                wake.setsockopt(zmq.LINGER, 0)
                wake.bind(self._wake_address)
                reason = self._loop(wake)
            finally:
                wake.close(linger=0)
        except Exception as error:
            log.exception("the producer's sender thread stopped")
            reason = f"the producer stopped: its sender thread failed ({error!r})"
        finally:
            self._shut_down(reason)

    def _loop(self, wake: zmq.Socket) -> str:
        """Rounds until the producer is closed; returns why it stopped."""
        network = self._new_network(wake)
        failures_in_a_row = 0
        try:
            while True:
                try:
                    if not self._round(network, wake):
                        return CLOSED_REASON
                    failures_in_a_row = 0
                except Exception as error:
                    failures_in_a_row += 1
                    log.exception("the producer's sender hit an unexpected error (%d in a row); it goes on",
                                  failures_in_a_row)
                    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        return (f"the producer stopped: its sender thread failed {failures_in_a_row} times in "
                                f"a row, last with {error!r}")
                    network = self._start_over(network, wake, error)
        finally:
            network.close()

    def _new_idempotence(self) -> IdempotenceManager | None:
        return IdempotenceManager(self._backoff) if self.config.enable_idempotence else None

    def _new_network(self, wake: zmq.Socket) -> NetworkClient:
        network = NetworkClient(self._context, self.config.client_id)
        network.register(wake)
        return network

    def _round(self, network: NetworkClient, wake: zmq.Socket) -> bool:
        """Drain, expire, send, then wait for responses; False once the producer is closed."""
        if self._force_close:
            return False
        if self._closing and not self.accumulator.has_work() and not network.pending:
            return False
        now = time.monotonic()
        blocked = self._blocked
        ready, next_due = self.accumulator.drain(now, self._closing, blocked)
        self._waiting.extend(ready)
        self._refresh_metadata(network, now)
        if self._idempotence is not None and self._idempotence.lookup_due(now):
            self._lookup_producer_id(network, now)
        self._expire(now)
        self._blocked = self._send_waiting(network, now)
        # A partition that could send again may have an open batch past its linger: drain it at once.
        timeout_ms = 0 if blocked - self._blocked else self._poll_timeout_ms(now, next_due)
        self._sleep(network, wake, timeout_ms)
        return True

    def _start_over(self, network: NetworkClient, wake: zmq.Socket, error: Exception) -> NetworkClient:
        """After an unexpected error: fail the batches this thread held (waiting or in flight), and drop the
        network client, so that no late answer completes them twice. Batches still queued are kept."""
        failure = ClientInternalError(f"the producer's sender failed while handling this record: {error!r}")
        self._waiting = []
        self._in_flight = set()
        for batch in self.accumulator.drained_unfinished():
            self.accumulator.finished(batch, -1, failure)
        self._idempotence = self._new_idempotence()  # failed batches left gaps in sequences: a new producer id
        network.close()
        self._metadata_stale = True
        time.sleep(FAILURE_BACKOFF_S)  # a failure that repeats at once must not spin
        return self._new_network(wake)

    def _shut_down(self, reason: str) -> None:
        """The thread ends: refuse later records and fail every unfinished one (closed, or failed for good)."""
        if reason != CLOSED_REASON:
            self.fatal_error = ProducerClosedError(reason)
        self.accumulator.close(reason)
        self._fail_all(ProducerClosedError(reason))
        with self.metadata_changed:
            self.metadata_changed.notify_all()  # callers waiting for a topic's metadata see the thread gone

    def _sleep(self, network: NetworkClient, wake: zmq.Socket, timeout_ms: float) -> None:
        """Wait for responses or a wake-up. ``asleep`` is set before the last look at the
        accumulator, so a batch closed after that look sees it and wakes this thread."""
        self.asleep = True
        try:
            if self.accumulator.has_ready():
                timeout_ms = 0
            elif network.handing_over:
                timeout_ms = min(timeout_ms, HAND_OVER_POLL_MS)
            if network.poll(timeout_ms):
                _drain(wake)
        finally:
            self.asleep = False

    def _poll_timeout_ms(self, now: float, next_due: float | None) -> float:
        deadlines = [next_due] if next_due is not None else []
        deadlines += [batch.retry_at for batch in self._waiting if batch.retry_at > now]
        if self._idempotence is not None and self._idempotence.lookup_retry_at > now:
            deadlines.append(self._idempotence.lookup_retry_at)
        if self._waiting and not deadlines:
            return 5  # waiting for leaders or in-flight room
        if not deadlines:
            return IDLE_POLL_MS
        return max(0.0, min(min(deadlines) - now, IDLE_POLL_MS / 1000) * 1000)

    def _refresh_metadata(self, network: NetworkClient, now: float) -> None:
        topics = set(self.wanted_topics)
        topics.update(self._leaderless)
        stale = self._metadata_stale or now - self.metadata.updated_at > METADATA_MAX_AGE_S
        if (not topics and not stale) or now - self._last_refresh_attempt < METADATA_REFRESH_BACKOFF_S:
            return
        self._last_refresh_attempt = now
        topics.update(self.metadata.partitions)
        try:
            self.metadata.refresh(network, sorted(topics), self.config.request_timeout_ms)
        except RillError as error:
            log.warning("metadata refresh failed: %s", error)
            return
        self._metadata_stale = False
        with self.metadata_changed:
            self.partition_counts = {name: len(parts) for name, parts in self.metadata.partitions.items()}
            self.wanted_topics.difference_update(self.metadata.partitions, self.metadata.errors)
            self.metadata_changed.notify_all()

    def _lookup_producer_id(self, network: NetworkClient, now: float) -> None:
        """Ask the controller for a producer id (InitProducerId) once there is something to send."""
        if not (self._waiting or self.wanted_topics or self.accumulator.has_work()):
            return
        idempotence = self._idempotence
        address = self.metadata.controller_address()
        if address is None:
            self._metadata_stale = True
            idempotence.lookup_failed(NotControllerError("no controller is known yet"), now)
            return
        request = protocol.InitProducerIdRequest(self.config.request_timeout_ms)
        if network.send(address, protocol.INIT_PRODUCER_ID, request, self._on_producer_id,
                        self.config.request_timeout_ms):
            self._controller_connecting_since = None
            idempotence.lookup_sent()
            return
        # Not connected yet: try again next round; a connection that does not come is a failure.
        if self._controller_connecting_since is None:
            self._controller_connecting_since = now
        elif now - self._controller_connecting_since > CONNECT_TIMEOUT_MS / 1000:
            self._controller_connecting_since = None
            self._metadata_stale = True
            error = BrokerNotAvailableError(f"no connection to the controller at {address}")
            log.warning("producer id lookup failed: %r", error)
            idempotence.lookup_failed(error, now)

    def _on_producer_id(self, response: protocol.InitProducerIdResponse | None, error: RillError | None) -> None:
        if error is None and response.error_code:
            error = error_for_code(response.error_code, response.error_message)
        if error is None:
            self._idempotence.set_producer_id(response.producer_id, response.producer_epoch)
            log.info("idempotent producer: producer id %d, epoch %d", response.producer_id, response.producer_epoch)
            return
        log.warning("producer id lookup failed: %r", error)
        if isinstance(error, METADATA_ERRORS):
            self._metadata_stale = True
        self._idempotence.lookup_failed(error, time.monotonic())
        if not error.retriable:  # e.g. a broker without InitProducerId: the batches waiting for an id fail
            unstamped = [batch for batch in self._waiting if batch.base_sequence < 0]
            self._waiting = [batch for batch in self._waiting if batch.base_sequence >= 0]
            for batch in unstamped:
                self._fail(batch, error)

    def _send_waiting(self, network: NetworkClient, now: float) -> set[tuple[str, int]]:
        """Send what may go now; the rest keeps its place, so each partition's batches stay in order. Returns
        the partitions with batches still waiting (found on the way, not by another pass over them all)."""
        by_address: dict[str, list[ProducerBatch]] = defaultdict(list)
        held: set[tuple[str, int]] = set()  # partitions whose older batch waits: newer ones wait too
        idempotence = self._idempotence
        # A request carries one batch per partition: a partition needs no more batches than its leader has
        # requests left in flight. Past that it is held, so a long queue (a send_many) costs a set lookup
        # per batch and round, not a trip through every step below.
        rooms: dict[str, int] = {}
        taken: dict[tuple[str, int], int] = defaultdict(int)
        full: set[tuple[str, int]] = set()  # partitions that have as many batches taken as requests can go
        self._leaderless = set()  # what the next metadata refresh asks for, found here: no scan of its own
        for batch in self._waiting:
            key = (batch.topic, batch.partition)
            if key in held:
                continue
            if key in full:
                held.add(key)
                continue
            address = self.metadata.leader_address(batch.topic, batch.partition)
            room = rooms.get(address)
            if room is None and address is not None:
                room = rooms[address] = self.config.max_in_flight - network.in_flight(address)
            if address is None or room <= 0 or batch.retry_at > now or (
                    idempotence is not None and not idempotence.admit(batch)):
                held.add(key)
                if address is None:
                    self._leaderless.add(batch.topic)
            else:
                by_address[address].append(batch)
                taken[key] += 1
                if taken[key] >= room:
                    full.add(key)
        if not by_address:
            return held
        for address, batches in by_address.items():
            self._send_to(network, address, batches)
        self._waiting = [batch for batch in self._waiting if not batch.in_flight]
        # A held partition has a batch left; one whose batches were all taken, if one of them was not sent.
        return held.union((batch.topic, batch.partition) for batches in by_address.values() for batch in batches
                          if not batch.in_flight)

    def _send_to(self, network: NetworkClient, address: str, batches: list[ProducerBatch]) -> None:
        """Send as many requests as in-flight room allows; a batch sent is marked ``in_flight``."""
        while batches and network.in_flight(address) < self.config.max_in_flight:
            request_batches, batches = self._one_request(batches)
            if not self._send_request(network, address, request_batches):
                self._metadata_stale = True  # the leader is not reachable: maybe it is not the leader
                return

    def _one_request(self, batches: list[ProducerBatch]) -> tuple[list[ProducerBatch], list[ProducerBatch]]:
        """At most one batch per partition, the first of each (keeps each partition's order), within
        max_request_size."""
        taken, rest, partitions, size = [], [], set(), 0
        for batch in batches:
            key = (batch.topic, batch.partition)
            if key in partitions:
                rest.append(batch)
                continue
            partitions.add(key)  # a batch that does not fit holds its partition's later ones back too
            encoded = batch.encode(self.config.compression)
            if taken and size + len(encoded) > self.config.max_request_size:
                rest.append(batch)
                continue
            taken.append(batch)
            size += len(encoded)
        return taken, rest

    def _send_request(self, network: NetworkClient, address: str, batches: list[ProducerBatch]) -> bool:
        by_topic: dict[str, list[protocol.PartitionProduceData]] = defaultdict(list)
        for batch in batches:
            by_topic[batch.topic].append(protocol.PartitionProduceData(batch.partition, batch.encoded))
        request = protocol.ProduceRequest(
            self.config.acks, self.config.request_timeout_ms,
            [protocol.TopicProduceData(topic, parts) for topic, parts in by_topic.items()],
        )
        send = network.send_only if self.config.acks == 0 else network.send
        sent_at = time.monotonic()
        if not send(address, protocol.PRODUCE, request,
                    lambda response, error: self._on_response(batches, response, error, sent_at),
                    self.config.request_timeout_ms):
            return False
        self.accumulator.metrics.request_sent()
        for batch in batches:
            batch.attempts += 1
            batch.in_flight = True
        self._in_flight.update(batches)
        return True

    def _on_response(self, batches: list[ProducerBatch], response: protocol.ProduceResponse | None,
                     error: RillError | None, sent_at: float) -> None:
        if response is not None:
            self.accumulator.metrics.request_answered(time.monotonic() - sent_at)
        if not all(batch.in_flight for batch in batches):  # some expired meanwhile: their answer comes too late
            batches = [batch for batch in batches if batch.in_flight]
        for batch in batches:
            batch.in_flight = False
        self._in_flight.difference_update(batches)
        if error is not None:
            for batch in batches:
                self._retry_or_fail(batch, error)
            return
        if response is None:  # acks=0: the request left, and that is all it gets
            for batch in batches:
                self.accumulator.finished(batch, -1, None)
            return
        results = {(t.topic, p.partition): p for t in response.topics for p in t.partitions}
        idempotence = self._idempotence
        for batch in batches:
            result = results.get((batch.topic, batch.partition))
            if result is None:
                self._retry_or_fail(batch, error_for_code(-1, "the broker did not answer for this partition"))
            elif result.error_code:
                self._retry_or_fail(batch, error_for_code(result.error_code, result.error_message))
            else:
                if idempotence is not None:
                    idempotence.acknowledged(batch)
                self.accumulator.finished(batch, result.base_offset, None)

    def _retry_or_fail(self, batch: ProducerBatch, error: RillError) -> None:
        """Retry after the backoff if the error allows it and the delivery timeout has not run out; else fail."""
        now = time.monotonic()
        if self._idempotence is not None and batch.base_sequence >= 0:
            retriable = self._idempotence.retriable(batch, error)
        else:
            retriable = error.retriable
        if not retriable or self._force_close:
            self._fail(batch, error)
        elif now >= batch.deadline:
            self._fail(batch, self._delivery_timed_out(batch, error))
        else:
            batch.last_error = error
            self.accumulator.metrics.batch_retried(batch.record_count)
            log.warning("%s-%d: retrying a batch of %d records after attempt %d failed: %r", batch.topic,
                        batch.partition, batch.record_count, batch.attempts, error)
            if isinstance(error, METADATA_ERRORS):
                self._metadata_stale = True
            batch.retry_at = now + self._backoff.delay_s(batch.attempts)
            self._requeue(batch)

    def _requeue(self, batch: ProducerBatch) -> None:
        """Put a batch to retry back in the waiting list: before its partition's later batches, after its
        earlier ones (responses may come back in any order), else at the front."""
        position = 0
        for index, other in enumerate(self._waiting):
            if other.partition == batch.partition and other.topic == batch.topic:
                if other.serial > batch.serial:
                    position = index
                    break
                position = index + 1
        self._waiting.insert(position, batch)

    def _expire(self, now: float) -> None:
        """Fail the batches whose delivery timeout ran out, waiting or in flight (a late answer is ignored)."""
        expired = [batch for batch in self._waiting if batch.deadline <= now]
        if expired:
            self._waiting = [batch for batch in self._waiting if batch.deadline > now]
        late = [batch for batch in self._in_flight if batch.deadline <= now]
        for batch in late:
            batch.in_flight = False
            self._in_flight.discard(batch)
        for batch in expired + late:
            self._fail(batch, self._delivery_timed_out(batch, batch.last_error))

    def _delivery_timed_out(self, batch: ProducerBatch, error: RillError | None) -> RillError:
        """The error of a batch whose delivery timeout ran out: its last error's type, else RequestTimeoutError."""
        message = (f"{batch.topic}-{batch.partition}: delivery_timeout_ms ran out after {batch.attempts} "
                   f"attempt{'' if batch.attempts == 1 else 's'}")
        if error is not None:
            return type(error)(f"{message}; last error: {error}")
        if self._idempotence is not None and batch.base_sequence < 0 and self._idempotence.lookup_error:
            message += f"; no producer id yet, the lookup's last error: {self._idempotence.lookup_error!r}"
        return RequestTimeoutError(message)

    def _fail(self, batch: ProducerBatch, error: RillError) -> None:
        if self._idempotence is not None and batch.base_sequence >= 0:
            self._idempotence.failed(batch)
        self.accumulator.finished(batch, -1, error)

    def _fail_all(self, error: RillError) -> None:
        self.accumulator.drain(time.monotonic(), force=True)
        for batch in self.accumulator.unfinished():
            self.accumulator.finished(batch, -1, error)
        self._waiting = []
        self._in_flight = set()


def _drain(socket: zmq.Socket) -> None:
    for _ in range(10_000):
        try:
            socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
