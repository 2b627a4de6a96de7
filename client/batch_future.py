"""BatchFuture: the outcome of one ``Producer.send_many``, as columns, never an object per record.

A send_many call's records land in a few producer batches (client/
accumulator.py); the future holds, per slice of a batch, where the slice's
records came from in the call's input, and completes when the last of
those batches is acknowledged or failed. ``get`` then gives a
:class:`BatchMetadata`: the partition and offset of every record, aligned
with the input order, as two arrays.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Sequence
from itertools import chain
from typing import NamedTuple

import msgspec
from rill.client.accumulator import ProducerBatch, _run_contained
from rill.client.arguments import check_timeout_s
from rill.client.errors import RequestTimeoutError, RillError
from rill.client.int_columns import counting


class BatchMetadata(msgspec.Struct, frozen=True):
    """Where a send_many call's records were stored: ``partitions`` (``array('i')``) and ``offsets``
    (``array('q')``; -1 with acks=0) of record i of the input at index i; ``timestamp`` (ms) is the one
    every record of the call carries."""

    topic: str
    partitions: array
    offsets: array
    timestamp: int


class Slice(NamedTuple):
    """``count`` records appended at ``index`` to ``batch``, from the input at ``positions`` (a range, or an
    ascending list of input indices for keyed records regrouped per partition)."""

    batch: ProducerBatch
    index: int
    count: int
    positions: Sequence[int]


class BatchFuture:
    """The outcome of one ``send_many``: ``get`` blocks until every record is acknowledged.

    Thread-safe. Done callbacks run once, on the producer's sender thread (or at once on the caller's if
    the future is done already); what a callback raises is logged and ignored, as with RecordFuture.
    """

    def __init__(self, topic: str, count: int, timestamp: int):
        self._topic = topic
        self._count = count
        self.timestamp = timestamp  # of every record of the call
        self._slices: list[Slice] = []
        self._failed_from: tuple[int, RillError] | None = None  # (first input position not queued, why)
        self._pending = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] | None = []
        self._metadata: BatchMetadata | None = None

    def __len__(self) -> int:
        return self._count

    # ---- filled by Producer.send_many ------------------------------------------------------

    def add(self, batch: ProducerBatch, index: int, count: int, positions: Sequence[int]) -> None:
        self._slices.append(Slice(batch, index, count, positions))

    def add_run(self, batch: ProducerBatch, index: int, start: int, count: int) -> None:
        """``add`` for input records ``start .. start + count - 1``: RecordAccumulator.append_many's hook."""
        self._slices.append(Slice(batch, index, count, range(start, start + count)))

    def queued_any(self) -> bool:
        return bool(self._slices)

    def not_queued(self, error: RillError) -> None:
        """The records no slice holds were not queued (buffer_memory stayed full, or the producer closed):
        they fail with ``error``."""
        queued = set(chain.from_iterable(piece.positions for piece in self._slices))
        first = next(position for position in range(self._count) if position not in queued)
        self._failed_from = (first, error)

    def start(self) -> None:
        """Every slice is added: complete once each of their batches is."""
        batches = {id(piece.batch): piece.batch for piece in self._slices}
        self._pending = len(batches)
        if not batches:
            self._complete()
        for batch in batches.values():
            batch.result.add_callback(self._batch_done)

    def _batch_done(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending:
                return
        self._complete()

    def _complete(self) -> None:
        self._done.set()
        with self._lock:
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks:
            _run_contained(callback)

    # ---- the caller's ------------------------------------------------------------------------

    def done(self) -> bool:
        """Whether every record is acknowledged or failed."""
        return self._done.is_set()

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def succeeded(self) -> bool:
        """Done, and every record acknowledged."""
        return self._done.is_set() and self._error() is None

    def exception(self, timeout: float | None = None) -> RillError | None:
        """The first error (of the earliest input record that failed), or None; waits up to ``timeout``."""
        self._wait(timeout)
        return self._error()

    def get(self, timeout: float | None = None) -> BatchMetadata:
        """Wait up to ``timeout`` seconds (None: for ever) for every record; their partitions and offsets
        in input order. Raises the first error (the RillError its batch failed with) if any record failed,
        RequestTimeoutError if the time runs out first."""
        self._wait(timeout)
        error = self._error()
        if error is not None:
            raise error
        if self._metadata is None:
            self._metadata = self._build_metadata()
        return self._metadata

    def add_callback(self, callback: Callable[[BatchMetadata], None]) -> None:
        """Call ``callback(metadata)`` once every record is acknowledged (never if one failed)."""
        _check_callable(callback)
        self._on_done(lambda: self.succeeded() and callback(self.get()))

    def add_errback(self, callback: Callable[[RillError], None]) -> None:
        """Call ``callback(error)`` with the first error once done, if a record failed."""
        _check_callable(callback)
        self._on_done(lambda: (error := self._error()) is not None and callback(error))

    def add_done_callback(self, callback: Callable[[BatchFuture], None]) -> None:
        """Call ``callback(future)`` once done, whatever the outcome (RecordFuture's hook)."""
        _check_callable(callback)
        self._on_done(lambda: callback(self))

    def _on_done(self, run: Callable[[], None]) -> None:
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(run)
                return
        _run_contained(run)

    def _wait(self, timeout: float | None) -> None:
        if not self._done.wait(check_timeout_s("timeout", timeout)):
            raise RequestTimeoutError(f"not every record was acknowledged within {timeout} s")

    def _error(self) -> RillError | None:
        first: tuple[int, RillError] | None = self._failed_from
        for piece in self._slices:
            error = piece.batch.result.error
            if error is not None:
                position = piece.positions[0]
                if first is None or position < first[0]:
                    first = (position, error)
        return None if first is None else first[1]

    def _build_metadata(self) -> BatchMetadata:
        partitions = array("i", [-1]) * self._count
        offsets = array("q", [-1]) * self._count
        for positions, partition, first, count in self._runs():
            placed = counting(first, count) if first >= 0 else array("q", [-1]) * count
            if isinstance(positions, range):
                partitions[positions.start:positions.stop] = array("i", [partition]) * count
                offsets[positions.start:positions.stop] = placed
            else:
                for position, offset in zip(positions, placed):
                    partitions[position] = partition
                    offsets[position] = offset
        return BatchMetadata(self._topic, partitions, offsets, self.timestamp)

    def _runs(self) -> list[tuple[Sequence[int], int, int, int]]:
        """(positions, partition, first offset or -1, count) of the slices, consecutive ones merged where both
        input positions and offsets follow on (a call's batches, stored one after the other): one column
        operation per run instead of per batch."""
        runs: list[tuple[Sequence[int], int, int, int]] = []
        for piece in self._slices:
            base = piece.batch.result.base_offset
            first = base + piece.index if base >= 0 else -1
            partition, positions = piece.batch.partition, piece.positions
            if runs and isinstance(positions, range) and first >= 0:
                before, before_partition, before_first, before_count = runs[-1]
                if isinstance(before, range) and before.stop == positions.start and before_partition == partition \
                        and before_first >= 0 and before_first + before_count == first:
                    runs[-1] = (range(before.start, positions.stop), partition, before_first, before_count + piece.count)
                    continue
            runs.append((positions, partition, first, piece.count))
        return runs


def _check_callable(callback: object) -> None:
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
