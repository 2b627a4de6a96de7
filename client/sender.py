"""The producer's background sender thread: drains ready batches to partition leaders.

Per broker it keeps up to ``max_in_flight`` produce requests outstanding,
each carrying at most one batch per partition. Retriable errors (NotLeader,
UnknownTopic, timeouts, dead brokers) refresh metadata and retry the batch
after ``retry_backoff_ms`` until its ``delivery_timeout_ms`` runs out; other
errors fail the batch's futures. The thread owns its NetworkClient and the
producer's ClusterMetadata; other threads only read ``partition_counts``.

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
    ClientInternalError,
    ProducerClosedError,
    RequestTimeoutError,
    RillError,
    error_for_code,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient

log = logging.getLogger(__name__)

IDLE_POLL_MS = 100
HAND_OVER_POLL_MS = 1  # acks=0: how often to look whether ZeroMQ has handed a request to its connection
MAX_FAILURES_IN_A_ROW = 10
FAILURE_BACKOFF_S = 0.05
CLOSED_REASON = "the producer was closed before the record was sent"
METADATA_MAX_AGE_S = 300.0
METADATA_REFRESH_BACKOFF_S = 0.05


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
        self._metadata_stale = False
        self._last_refresh_attempt = 0.0
        self._closing = False
        self._force_close = False
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

    def _new_network(self, wake: zmq.Socket) -> NetworkClient:
        network = NetworkClient(self._context, self.config.client_id)
        network.register(wake)
        return network

    def _round(self, network: NetworkClient, wake: zmq.Socket) -> bool:
        """Drain, send, expire, then wait for responses; False once the producer is closed."""
        if self._force_close:
            return False
        if self._closing and not self.accumulator.has_work() and not network.pending:
            return False
        now = time.monotonic()
        ready, next_due = self.accumulator.drain(now, force=self._closing)
        self._waiting.extend(ready)
        self._refresh_metadata(network, now)
        self._send_waiting(network, now)
        self._expire(now)
        self._sleep(network, wake, self._poll_timeout_ms(now, next_due))
        return True

    def _start_over(self, network: NetworkClient, wake: zmq.Socket, error: Exception) -> NetworkClient:
        """After an unexpected error: fail the batches this thread held (waiting or in flight), and drop the
        network client, so that no late answer completes them twice. Batches still queued are kept."""
        failure = ClientInternalError(f"the producer's sender failed while handling this record: {error!r}")
        self._waiting = []
        for batch in self.accumulator.drained_unfinished():
            self.accumulator.finished(batch, -1, failure)
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
        if self._waiting and not deadlines:
            return 5  # waiting for leaders or in-flight room
        if not deadlines:
            return IDLE_POLL_MS
        return max(0.0, min(min(deadlines) - now, IDLE_POLL_MS / 1000) * 1000)

    def _refresh_metadata(self, network: NetworkClient, now: float) -> None:
        topics = set(self.wanted_topics)
        topics.update(batch.topic for batch in self._waiting
                      if self.metadata.leader_address(batch.topic, batch.partition) is None)
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

    def _send_waiting(self, network: NetworkClient, now: float) -> None:
        by_address: dict[str, list[ProducerBatch]] = defaultdict(list)
        keep: list[ProducerBatch] = []
        held: set[tuple[str, int]] = set()  # partitions whose older batch waits: newer ones wait too
        for batch in self._waiting:
            key = (batch.topic, batch.partition)
            address = self.metadata.leader_address(batch.topic, batch.partition)
            if address is None or batch.retry_at > now or key in held:
                held.add(key)
                keep.append(batch)
            else:
                by_address[address].append(batch)
        for address, batches in by_address.items():
            keep.extend(self._send_to(network, address, batches))
        self._waiting = keep

    def _send_to(self, network: NetworkClient, address: str, batches: list[ProducerBatch]) -> list[ProducerBatch]:
        """Send as many requests as in-flight room allows; returns the batches left waiting."""
        while batches and network.in_flight(address) < self.config.max_in_flight:
            request_batches, batches = self._one_request(batches)
            if not self._send_request(network, address, request_batches):
                self._metadata_stale = True  # the leader is not reachable: maybe it is not the leader
                return request_batches + batches
        return batches

    def _one_request(self, batches: list[ProducerBatch]) -> tuple[list[ProducerBatch], list[ProducerBatch]]:
        """At most one batch per partition (keeps each partition's order), within max_request_size."""
        taken, rest, partitions, size = [], [], set(), 0
        for batch in batches:
            encoded = batch.encode(self.config.compression)
            key = (batch.topic, batch.partition)
            if key in partitions or (taken and size + len(encoded) > self.config.max_request_size):
                rest.append(batch)
                continue
            partitions.add(key)
            taken.append(batch)
            size += len(encoded)
        return taken, rest

    def _send_request(self, network: NetworkClient, address: str, batches: list[ProducerBatch]) -> bool:
        by_topic: dict[str, list[protocol.PartitionProduceData]] = defaultdict(list)
        for batch in batches:
            by_topic[batch.topic].append(protocol.PartitionProduceData(batch.partition, batch.encoded))
            batch.attempts += 1
        request = protocol.ProduceRequest(
            self.config.acks, self.config.request_timeout_ms,
            [protocol.TopicProduceData(topic, parts) for topic, parts in by_topic.items()],
        )
        send = network.send_only if self.config.acks == 0 else network.send
        return send(address, protocol.PRODUCE, request,
                    lambda response, error: self._on_response(batches, response, error),
                    self.config.request_timeout_ms)

    def _on_response(self, batches: list[ProducerBatch], response: protocol.ProduceResponse | None,
                     error: RillError | None) -> None:
        if error is not None:
            for batch in batches:
                self._retry_or_fail(batch, error)
            return
        if response is None:  # acks=0: the request left, and that is all it gets
            for batch in batches:
                self.accumulator.finished(batch, -1, None)
            return
        results = {(t.topic, p.partition): p for t in response.topics for p in t.partitions}
        for batch in batches:
            result = results.get((batch.topic, batch.partition))
            if result is None:
                self._retry_or_fail(batch, error_for_code(-1, "the broker did not answer for this partition"))
            elif result.error_code:
                self._retry_or_fail(batch, error_for_code(result.error_code, result.error_message))
            else:
                self.accumulator.finished(batch, result.base_offset, None)

    def _retry_or_fail(self, batch: ProducerBatch, error: RillError) -> None:
        now = time.monotonic()
        if error.retriable and now < batch.deadline and not self._force_close:
            self._metadata_stale = True
            batch.retry_at = now + self.config.retry_backoff_ms / 1000
            self._waiting.insert(0, batch)
            return
        self.accumulator.finished(batch, -1, error)

    def _expire(self, now: float) -> None:
        expired = [batch for batch in self._waiting if batch.deadline <= now]
        if not expired:
            return
        self._waiting = [batch for batch in self._waiting if batch.deadline > now]
        for batch in expired:
            self.accumulator.finished(
                batch, -1,
                RequestTimeoutError(f"{batch.topic}-{batch.partition}: not delivered within delivery_timeout_ms"),
            )

    def _fail_all(self, error: RillError) -> None:
        self.accumulator.drain(time.monotonic(), force=True)
        for batch in self.accumulator.unfinished():
            self.accumulator.finished(batch, -1, error)
        self._waiting = []


def _drain(socket: zmq.Socket) -> None:
    for _ in range(10_000):
        try:
            socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
