"""The producer's record accumulator: open batches per partition, ready batches for the sender.

``send`` appends a record's columns to the open batch of its partition (a
few list appends, no encoding); ``send_many`` appends a slice of its
columns per batch (``append_many``: list slicing, no step per record; a
slice of values only that fills a new batch is joined into its payload at
once); a batch closes when it reaches ``batch_size`` or when the sender drains it
after ``linger_ms``. Memory is
bounded by ``buffer_memory``: ``append`` blocks up to ``max_block_ms`` while
the sender catches up; a batch's bytes count until it is acknowledged, or,
with acks=0, until ZeroMQ has handed them to the connection. Thread-safe:
one lock guards every batch list. It also holds the producer's metrics
(client/producer_metrics.py), which it and the sender thread count into.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Container, Mapping

from rill.client import batch as batch_format
from rill.client.arguments import check_timeout_s
from rill.client.errors import ProducerClosedError, RequestTimeoutError, RillError
from rill.client.producer_metrics import ProducerMetrics
from rill.client.types import RecordMetadata

log = logging.getLogger(__name__)

RECORD_OVERHEAD_BYTES = 16  # length and timestamp columns of one record


class BatchResult:
    """Completion of one batch: its base offset or its error, shared by its records' futures.

    ``wait`` returns once the outcome is known (a callback may call ``result`` on its future);
    ``wait_settled`` once every done callback registered before completion has run too, so that
    ``flush`` returns only after the callbacks of the records it waited for. The two
    ``threading.Event``s are made by the first thread that has to wait: most batches complete with
    nobody waiting on them, and two Events (a Condition and a lock each) were a tenth of what making
    a batch cost.
    """

    __slots__ = ("_callbacks", "_events", "_state", "base_offset", "error")

    def __init__(self) -> None:
        self._state = _PENDING
        self._events: tuple[threading.Event, threading.Event] | None = None  # (complete, settled), on demand
        self.base_offset = -1
        self.error: RillError | None = None
        self._callbacks: list[Callable[[], None]] | None = None

    @property
    def done(self) -> bool:
        """Whether the outcome is known."""
        return self._state >= _COMPLETE

    def complete(self, base_offset: int, error: RillError | None) -> None:
        self.base_offset = base_offset
        self.error = error
        with _CALLBACKS_LOCK:
            self._state = _COMPLETE
            callbacks, self._callbacks = self._callbacks, _COMPLETED
            events = self._events
        if events is not None:
            events[0].set()
        for callback in callbacks or ():
            _run_contained(callback)
        with _CALLBACKS_LOCK:
            self._state = _SETTLED
            events = self._events
        if events is not None:
            events[1].set()

    def wait(self, timeout: float | None) -> bool:
        return self._wait_for(_COMPLETE, timeout)

    def wait_settled(self, timeout: float | None) -> bool:
        return self._wait_for(_SETTLED, timeout)

    def _wait_for(self, state: int, timeout: float | None) -> bool:
        if self._state >= state:
            return True
        with _CALLBACKS_LOCK:  # complete() changes the state and reads the events under it: no wake-up is lost
            if self._state >= state:
                return True
            if self._events is None:
                self._events = (threading.Event(), threading.Event())
            event = self._events[state - 1]
        return event.wait(timeout)

    def add_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on completion, or now (on this thread) if the batch is complete already."""
        with _CALLBACKS_LOCK:
            if self._callbacks is not _COMPLETED:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        _run_contained(callback)


_CALLBACKS_LOCK = threading.Lock()  # callbacks and waits are rare: one lock for every batch is enough
_PENDING, _COMPLETE, _SETTLED = 0, 1, 2  # a BatchResult's states; _COMPLETE and _SETTLED index its events + 1
_COMPLETED: list = []  # a batch's callback list once its callbacks were taken to run


def _run_contained(callback: Callable[[], None]) -> None:
    """Run a user's done callback; what it raises is logged, never passed on to the thread that runs it
    (usually the sender thread, which must go on serving every other record)."""
    try:
        callback()
    except Exception:
        log.exception("a record's done callback raised; the error is logged and ignored")


class RecordFuture(tuple):
    """The outcome of one ``send``: ``result(timeout)`` gives RecordMetadata or raises the error.

    A (batch, index) tuple, so that creating one per record costs no Python call.
    """

    __slots__ = ()

    def done(self) -> bool:
        return self[0].result.done

    def result(self, timeout: float | None = None) -> RecordMetadata:
        batch, index = self
        result = batch.result
        if not result.wait(check_timeout_s("timeout", timeout)):
            raise RequestTimeoutError(f"no acknowledgement within {timeout} s")
        if result.error is not None:
            raise result.error
        offset = result.base_offset + index if result.base_offset >= 0 else -1
        return RecordMetadata(batch.topic, batch.partition, offset, batch.timestamps[index])

    def exception(self, timeout: float | None = None) -> RillError | None:
        result = self[0].result
        if not result.wait(check_timeout_s("timeout", timeout)):
            raise RequestTimeoutError(f"no acknowledgement within {timeout} s")
        return result.error

    def add_done_callback(self, callback: Callable[[RecordFuture], None]) -> None:
        """Call ``callback(future)`` once the record is acknowledged or failed (on the sender thread, or at
        once on this thread if it is done already). What the callback raises is logged and ignored."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self[0].result.add_callback(lambda: callback(self))


class ProducerBatch:
    """Records for one partition, kept as columns until the sender encodes them once.

    ``serial`` orders the producer's batches by creation (per partition: send order). The sender
    keeps the delivery state: ``attempts`` (requests that carried it), ``in_flight``, ``retry_at``
    and ``last_error`` (the latest retriable error, reported if the delivery timeout runs out).
    An idempotent producer stamps ``producer_id``, ``producer_epoch`` and ``base_sequence`` before
    the first encode; they stay for the batch's life unless an epoch bump renumbers it (``stamp``).
    """

    __slots__ = (
        "attempts",
        "base_sequence",
        "created",
        "deadline",
        "encoded",
        "has_keys",
        "headers",
        "in_flight",
        "keys",
        "last_error",
        "partition",
        "payload",
        "producer_epoch",
        "producer_id",
        "result",
        "retry_at",
        "serial",
        "size_bytes",
        "timestamps",
        "topic",
        "values",
    )

    def __init__(self, topic: str, partition: int, now: float, delivery_timeout_s: float, serial: int = 0):
        self.topic = topic
        self.partition = partition
        self.serial = serial
        self.values: list = []
        self.keys: list = []
        self.timestamps: list[int] = []
        self.headers: list | None = None
        self.has_keys = False
        self.size_bytes = batch_format.HEADER_SIZE + 1
        self.created = now
        self.deadline = now + delivery_timeout_s
        self.result = BatchResult()
        self.encoded: bytes | None = None
        self.payload: bytes | None = None  # built at append: a send_many's batch of values only (see append_many)
        self.attempts = 0
        self.in_flight = False
        self.retry_at = 0.0
        self.last_error: RillError | None = None
        self.producer_id = batch_format.NO_PRODUCER_ID
        self.producer_epoch = batch_format.NO_PRODUCER_EPOCH
        self.base_sequence = batch_format.NO_SEQUENCE

    @property
    def record_count(self) -> int:
        return len(self.timestamps)

    def stamp(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        """Set the idempotent producer's fields; bytes encoded already are rebuilt with them."""
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        if self.encoded is not None:
            self.encoded = batch_format.with_producer_state(self.encoded, producer_id, producer_epoch, base_sequence)

    def encode(self, compression: int) -> bytes:
        """The batch's wire bytes, built once with bulk column calls and kept for retries."""
        if self.encoded is None and self.payload is not None:
            self.encoded = batch_format.encode_batch_of_payload(
                self.payload, len(self.timestamps), self.timestamps[0], self.timestamps[0], compression,
                self.producer_id, self.producer_epoch, self.base_sequence,
            )
            self.payload = None
        elif self.encoded is None:
            self.encoded = batch_format.encode_batch(
                self.values, self.keys if self.has_keys else None, self.timestamps, self.headers, compression,
                self.producer_id, self.producer_epoch, self.base_sequence,
            )
            self.values = self.keys = self.headers = None  # only timestamps are needed from here on
        return self.encoded


class RecordAccumulator:
    """Open and ready batches per partition; shared by callers of send and the sender thread."""

    def __init__(self, batch_size: int, linger_ms: int, buffer_memory: int, max_block_ms: int,
                 delivery_timeout_ms: int, wake_sender: Callable[[], None],
                 on_batch_closed: Callable[[str, int], None]):
        self._batch_size = batch_size
        self._linger_s = linger_ms / 1000
        self._buffer_memory = buffer_memory
        self._max_block_s = max_block_ms / 1000
        self._delivery_timeout_s = delivery_timeout_ms / 1000
        self._wake_sender = wake_sender
        self._on_batch_closed = on_batch_closed
        self._lock = threading.Lock()  # a plain lock: `with` on it costs no Python call
        self._memory_freed = threading.Condition(self._lock)
        self._open: dict[tuple[str, int], ProducerBatch] = {}
        self._ready: deque[ProducerBatch] = deque()
        self._buffered_bytes = 0
        self._unfinished: set[ProducerBatch] = set()
        self._closed_reason: str | None = None
        self._serials = itertools.count()
        self.flushing = 0
        self.metrics = ProducerMetrics(buffer_memory)

    def append(self, topic: str, partition: int, timestamp: int, key: bytes | None, value: bytes | None,
               headers: Mapping[str, bytes] | None, size: int) -> RecordFuture:
        with self._lock:
            if self._buffered_bytes >= self._buffer_memory:
                self._wait_for_memory()
            if self._closed_reason is not None:
                raise ProducerClosedError(self._closed_reason)
            batch = self._open.get((topic, partition))
            if batch is None:
                batch = self._new_batch(topic, partition)
            index = len(batch.values)
            batch.values.append(value)
            batch.keys.append(key)
            batch.timestamps.append(timestamp)
            if key is not None:
                batch.has_keys = True
            if headers:
                if batch.headers is None:
                    batch.headers = [None] * index
                batch.headers.append(headers)
            elif batch.headers is not None:
                batch.headers.append(None)
            batch.size_bytes += size + RECORD_OVERHEAD_BYTES
            self._buffered_bytes += size + RECORD_OVERHEAD_BYTES
            if batch.size_bytes >= self._batch_size:
                self._close(batch)
                self._wake_sender()
            return RecordFuture((batch, index))

    def append_many(self, topic: str, partition: int, timestamp: int, keys: list | None, values: list,
                    headers: Mapping[str, bytes] | list | None, sizes: list[int], start: int, stop: int,
                    add_slice: Callable[[ProducerBatch, int, int, int], None], until_closed: bool = False,
                    values_only: bool = False) -> int:
        """``append`` for a send_many's columns: records [start, stop) go to the partition's open batches a
        slice at a time, each slice as many records as fill the open batch to batch_size (closing it), with
        list slicing, not a call per record.

        ``sizes[i]``: bytes of record i's key, value and headers; ``headers``: one
        mapping for every record, or a list with one (or None) per record. ``add_slice(batch, index, start,
        count)`` hears of each slice. Blocks on buffer_memory before each slice, as append does before each
        record; the lock is let go between slices. Returns the index after the last record appended: ``stop``,
        or with ``until_closed`` where the first batch closed (unkeyed records move on to the next sticky
        partition there).

        ``values_only``: the records have a value each and no key or header, so ``sizes`` are the value
        lengths. A slice that fills a new batch then builds its payload at once (batch.values_payload) and
        keeps one timestamp column, not a list of records per column for the garbage collector to walk.
        """
        position = start
        guess = 0  # records the last slice took: where the next slice's search starts
        while position < stop:
            with self._lock:
                if self._buffered_bytes >= self._buffer_memory:
                    self._wait_for_memory()
                if self._closed_reason is not None:
                    raise ProducerClosedError(self._closed_reason)
                batch = self._open.get((topic, partition))
                if batch is None:
                    batch = self._new_batch(topic, partition)
                end, added = self._slice_end(batch, sizes, position, stop, guess)
                count = guess = end - position
                index = len(batch.values)
                if values_only and not index and batch.size_bytes + added >= self._batch_size:
                    batch.payload = batch_format.values_payload(values[position:end], sizes[position:end])
                    batch.timestamps = array("q", [timestamp]) * count
                else:
                    self._append_columns(batch, index, timestamp, keys, values, headers, position, end)
                batch.size_bytes += added
                self._buffered_bytes += added
                add_slice(batch, index, position, count)
                position = end
                if batch.size_bytes >= self._batch_size:
                    self._close(batch)
                    self._wake_sender()
                    if until_closed:
                        break
        return position

    @staticmethod
    def _append_columns(batch: ProducerBatch, index: int, timestamp: int, keys: list | None, values: list,
                        headers: Mapping[str, bytes] | list | None, position: int, end: int) -> None:
        """Records [position, end) onto the batch's column lists (at ``index``)."""
        count = end - position
        batch.values += values[position:end]
        batch.timestamps += [timestamp] * count
        if keys is None:
            batch.keys += [None] * count
        else:
            part = keys[position:end]
            batch.keys += part
            if part.count(None) != count:
                batch.has_keys = True
        if headers is not None:
            if batch.headers is None:
                batch.headers = [None] * index
            batch.headers += headers[position:end] if isinstance(headers, list) else [headers] * count
        elif batch.headers is not None:
            batch.headers += [None] * count

    def _slice_end(self, batch: ProducerBatch, sizes: list[int], start: int, stop: int, guess: int
                   ) -> tuple[int, int]:
        """Where the slice from ``start`` ends, and its bytes: after the record that brings ``batch`` to
        batch_size (as append closes a batch), or at ``stop``. Sums of list slices, galloping from ``guess``
        records and then halving, not a step per record."""
        room = self._batch_size - batch.size_bytes
        low, below = start, 0  # bytes of records [start, low): below room
        high = min(stop, start + max(1, guess, room // (RECORD_OVERHEAD_BYTES + 1 + sizes[start])))
        while True:
            used = below + _bytes_of(sizes, low, high)
            if used >= room or high == stop:
                break
            low, below, high = high, used, min(stop, high + (high - start))
        if used < room:
            return stop, used
        if used - sizes[high - 1] - RECORD_OVERHEAD_BYTES < room:  # the guess was right (even sizes)
            return high, used
        while high - low > 1:  # the first end in (low, high] whose bytes reach room
            middle = (low + high) // 2
            at_middle = below + _bytes_of(sizes, low, middle)
            if at_middle >= room:
                high, used = middle, at_middle
            else:
                low, below = middle, at_middle
        return high, used

    def _new_batch(self, topic: str, partition: int) -> ProducerBatch:
        batch = ProducerBatch(topic, partition, time.monotonic(), self._delivery_timeout_s, next(self._serials))
        self._open[(topic, partition)] = batch
        self._unfinished.add(batch)
        if len(self._open) == 1 and not self._ready:
            self._wake_sender()  # the sender may be sleeping with nothing to time
        return batch

    def _wait_for_memory(self) -> None:
        deadline = time.monotonic() + self._max_block_s
        while self._buffered_bytes >= self._buffer_memory and self._closed_reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeoutError(
                    f"buffer_memory ({self._buffer_memory} bytes) stayed full for max_block_ms"
                )
            self._wake_sender()
            self._memory_freed.wait(remaining)

    def _close(self, batch: ProducerBatch) -> None:
        del self._open[(batch.topic, batch.partition)]
        self._ready.append(batch)
        self._on_batch_closed(batch.topic, batch.partition)

    def drain(self, now: float, force: bool, blocked: Container[tuple[str, int]] = ()
              ) -> tuple[list[ProducerBatch], float | None]:
        """Batches to send now, and when the next open batch's linger ends (None: none is due).

        The open batch of a ``blocked`` partition (one whose older batches the sender cannot send yet)
        stays open past its linger, as a Kafka batch does until it is drained: it fills up to batch_size
        instead of queueing behind them as many small batches.
        """
        with self._lock:
            close_all = force or self.flushing
            next_due = None
            for batch in list(self._open.values()):
                if close_all:
                    self._close(batch)
                elif (batch.topic, batch.partition) not in blocked:
                    due = batch.created + self._linger_s
                    if now >= due:
                        self._close(batch)
                    elif next_due is None or due < next_due:
                        next_due = due
            ready = list(self._ready)
            self._ready.clear()
            return ready, next_due

    def has_ready(self) -> bool:
        """Whether a closed batch waits for the sender (checked under the lock, see Sender)."""
        with self._lock:
            return bool(self._ready)

    def finished(self, batch: ProducerBatch, base_offset: int, error: RillError | None) -> None:
        """Complete a batch's futures and give its memory back; a batch finished already stays as it was."""
        with self._lock:
            if batch not in self._unfinished:
                return
            self._unfinished.remove(batch)
            self._buffered_bytes -= batch.size_bytes - batch_format.HEADER_SIZE - 1
            self._memory_freed.notify_all()
        # Counted before the futures complete: once flush() returns, metrics() shows its records.
        self.metrics.batch_finished(batch.record_count, 0 if batch.encoded is None else len(batch.encoded), error)
        batch.result.complete(base_offset, error)

    def usage(self) -> tuple[int, int, int]:
        """(bytes buffered, records not yet sent, records in requests awaiting an answer): for metrics."""
        queued = in_flight = 0
        with self._lock:
            for batch in self._unfinished:
                if batch.in_flight:
                    in_flight += len(batch.timestamps)
                else:
                    queued += len(batch.timestamps)
            return self._buffered_bytes, queued, in_flight

    def unfinished(self) -> list[ProducerBatch]:
        with self._lock:
            return list(self._unfinished)

    def drained_unfinished(self) -> list[ProducerBatch]:
        """Unfinished batches the sender holds: drained (neither open nor ready), not yet finished."""
        with self._lock:
            queued = set(self._open.values()).union(self._ready)
            return [batch for batch in self._unfinished if batch not in queued]

    def close(self, reason: str) -> None:
        """Refuse every later append with ProducerClosedError(reason); wakes appends blocked on memory."""
        with self._lock:
            self._closed_reason = reason
            self._memory_freed.notify_all()

    def has_work(self) -> bool:
        with self._lock:
            return bool(self._unfinished)


def _bytes_of(sizes: list[int], start: int, end: int) -> int:
    """What records [start, end) add to a batch: their sizes and RECORD_OVERHEAD_BYTES each."""
    return sum(sizes[start:end]) + RECORD_OVERHEAD_BYTES * (end - start)
