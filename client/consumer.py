"""Consumer: reads records from subscribed topics or assigned partitions.

``poll`` returns up to ``max_poll_records`` records, decoding fetched
batches with bulk column calls (client/batch.py). One fetch request per
leader broker is kept in flight, asking from the position after what is
already buffered, so the broker reads the next data while this thread
decodes. Positions start at ``auto_offset_reset`` ("earliest", "latest" or
"none") and move past every record returned. Without a group there are no
committed offsets. Not thread-safe, like Kafka's consumer: use it from one
thread.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Iterable

import zmq

from rill.client import protocol
from rill.client.batch import check_batch, decode_batch, read_header
from rill.client.errors import (
    ConsumerClosedError,
    InvalidConfigError,
    OffsetOutOfRangeError,
    RillError,
    error_for_code,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient, parse_bootstrap
from rill.client.types import Record, TopicPartition

RESET_STRATEGIES = ("earliest", "latest", "none")
RETRY_BACKOFF_S = 0.1


class _PartitionState:
    """Where one assigned partition stands: what poll returns next, and what to fetch next."""

    __slots__ = ("position", "fetch_position", "buffered", "records", "high_watermark", "paused")

    def __init__(self) -> None:
        self.position: int | None = None
        self.fetch_position: int | None = None
        self.buffered: deque[bytes] = deque()
        self.records: deque[Record] = deque()
        self.high_watermark = -1
        self.paused = False


class Consumer:
    """Reads records; ``topics`` subscribes to every partition of each, or use ``assign``."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Iterable[str] | None = None,
        auto_offset_reset: str = "latest",
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        fetch_max_bytes: int = 52428800,
        max_partition_fetch_bytes: int = 1048576,
        max_poll_records: int = 500,
        request_timeout_ms: int = 30000,
        check_crcs: bool = True,
        client_id: str = "rill-consumer",
    ):
        if auto_offset_reset not in RESET_STRATEGIES:
            raise InvalidConfigError(f"auto_offset_reset must be one of {RESET_STRATEGIES}, got {auto_offset_reset!r}")
        for name, value in (("fetch_min_bytes", fetch_min_bytes), ("fetch_max_bytes", fetch_max_bytes),
                            ("max_partition_fetch_bytes", max_partition_fetch_bytes),
                            ("max_poll_records", max_poll_records), ("request_timeout_ms", request_timeout_ms)):
            if not isinstance(value, int) or value < 1:
                raise InvalidConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(fetch_max_wait_ms, int) or fetch_max_wait_ms < 0:
            raise InvalidConfigError(f"fetch_max_wait_ms must be >= 0, got {fetch_max_wait_ms!r}")
        self._reset = auto_offset_reset
        self._fetch_min_bytes = fetch_min_bytes
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_max_bytes = fetch_max_bytes
        self._partition_max_bytes = max_partition_fetch_bytes
        self._max_poll_records = max_poll_records
        self._timeout_ms = request_timeout_ms
        self._check_crcs = check_crcs
        self._metadata = ClusterMetadata(parse_bootstrap(bootstrap))
        self._context = zmq.Context()
        self._network = NetworkClient(self._context, client_id)
        self._subscription: set[str] = set()
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._fetching: set[str] = set()
        self._metadata_stale = False
        self._closed = False
        if topics is not None:
            try:
                self.subscribe(list(topics))
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- what to read -------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """Read every partition of these topics (partitions added later are picked up on refresh)."""
        self._check_open()
        self._subscription = set(topics)
        self._metadata.refresh(self._network, sorted(self._subscription), self._timeout_ms)
        for topic in self._subscription:
            if topic not in self._metadata.partitions:
                raise self._metadata.topic_error(topic)
        self._follow_subscription()

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read exactly these partitions, replacing any subscription."""
        self._check_open()
        self._subscription = set()
        wanted = set(partitions)
        self._states = {tp: self._states.get(tp) or _PartitionState() for tp in wanted}
        self._metadata.refresh(self._network, sorted({tp.topic for tp in wanted}), self._timeout_ms)

    def assignment(self) -> set[TopicPartition]:
        return set(self._states)

    def _follow_subscription(self) -> None:
        if not self._subscription:
            return
        wanted = {TopicPartition(topic, p.partition)
                  for topic in self._subscription for p in self._metadata.partitions.get(topic, [])}
        self._states = {tp: self._states.get(tp) or _PartitionState() for tp in wanted}

    # ---- positions ----------------------------------------------------------------

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make the next poll return records of ``partition`` from ``offset``."""
        state = self._state(partition)
        state.position = state.fetch_position = offset
        state.buffered.clear()
        state.records.clear()

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._reset_positions(list(partitions or self._states), protocol.EARLIEST_TIMESTAMP)

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._reset_positions(list(partitions or self._states), protocol.LATEST_TIMESTAMP)

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record poll will return for ``partition``."""
        state = self._state(partition)
        if state.position is None:
            self._initialize_positions()
        return state.position

    def offsets_for_times(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """The earliest offset whose timestamp is at or after each given time (None: no such record)."""
        found = self._list_offsets(timestamps)
        return {tp: (offset if offset >= 0 else None) for tp, offset in found.items()}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._list_offsets({tp: protocol.LATEST_TIMESTAMP for tp in partitions})

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._list_offsets({tp: protocol.EARLIEST_TIMESTAMP for tp in partitions})

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._state(partition).paused = True

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._state(partition).paused = False

    def _state(self, partition: TopicPartition) -> _PartitionState:
        state = self._states.get(partition)
        if state is None:
            raise InvalidConfigError(f"{partition.topic}-{partition.partition} is not assigned to this consumer")
        return state

    def _initialize_positions(self) -> None:
        missing = [tp for tp, state in self._states.items() if state.position is None]
        if not missing:
            return
        if self._reset == "none":
            raise OffsetOutOfRangeError(f"no position for {missing} and auto_offset_reset is 'none'")
        timestamp = protocol.EARLIEST_TIMESTAMP if self._reset == "earliest" else protocol.LATEST_TIMESTAMP
        self._reset_positions(missing, timestamp)

    def _reset_positions(self, partitions: list[TopicPartition], timestamp: int) -> None:
        for tp, offset in self._list_offsets({tp: timestamp for tp in partitions}).items():
            self.seek(tp, offset)

    def _list_offsets(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """ListOffsets to each partition's leader, retrying retriable errors until the request timeout."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        result: dict[TopicPartition, int] = {}
        pending = dict(timestamps)
        while pending:
            self._ask_offsets(pending, result)
            if not pending:
                break
            if time.monotonic() + RETRY_BACKOFF_S > deadline:
                raise self._last_offsets_error
            time.sleep(RETRY_BACKOFF_S)
            self._metadata.refresh(self._network, sorted({tp.topic for tp in pending}), self._timeout_ms)
        return result

    def _ask_offsets(self, pending: dict[TopicPartition, int], result: dict[TopicPartition, int]) -> None:
        self._last_offsets_error: RillError = OffsetOutOfRangeError("no leader known")
        by_address: dict[str, list[TopicPartition]] = {}
        for tp in pending:
            address = self._metadata.leader_address(tp.topic, tp.partition)
            if address is not None:
                by_address.setdefault(address, []).append(tp)
        for address, partitions in by_address.items():
            request = protocol.ListOffsetsRequest([
                protocol.TopicListOffsets(tp.topic, [protocol.PartitionListOffsets(tp.partition, pending[tp])])
                for tp in partitions
            ])
            try:
                response = self._network.request(address, protocol.LIST_OFFSETS, request, self._timeout_ms)
            except RillError as error:
                if not error.retriable:
                    raise
                self._last_offsets_error = error
                continue
            for topic in response.topics:
                for answer in topic.partitions:
                    tp = TopicPartition(topic.topic, answer.partition)
                    if answer.error_code:
                        error = error_for_code(answer.error_code, answer.error_message)
                        if not error.retriable:
                            raise error
                        self._last_offsets_error = error
                        continue
                    result[tp] = answer.offset
                    pending.pop(tp, None)

    # ---- poll ---------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> list[Record]:
        """Records fetched since the last poll, waiting up to ``timeout`` seconds for some."""
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        self._initialize_positions()
        for _ in range(100_000):
            records = self._drain_records()
            if records:
                self._send_fetches()  # keep the next fetch in flight while the caller works
                return records
            self._refresh_metadata_if_stale()
            self._send_fetches()
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                return []
            self._network.poll(min(remaining_ms, 100))
        return []

    def _drain_records(self) -> list[Record]:
        out: list[Record] = []
        budget = self._max_poll_records
        for tp, state in self._states.items():
            if state.paused:
                continue
            while budget > 0 and (state.records or state.buffered):
                if not state.records:
                    self._decode_next(tp, state)
                    continue
                taken = _take(state.records, budget)
                state.position = taken[-1].offset + 1
                out.extend(taken)
                budget -= len(taken)
            if budget == 0:
                break
        return out

    def _decode_next(self, tp: TopicPartition, state: _PartitionState) -> None:
        """Decode one buffered fetch response, keeping the records at or after the position."""
        data = state.buffered.popleft()
        position = 0
        records: list[Record] = []
        for _ in range(1_000_000):
            if position >= len(data):
                break
            header = check_batch(data, position) if self._check_crcs else read_header(data, position)
            if header.next_offset > state.position:
                records.extend(decode_batch(data, tp.topic, tp.partition, position, check_crc=False))
            position += header.size
        if records and records[0].offset < state.position:
            records = [record for record in records if record.offset >= state.position]
        state.records.extend(records)

    def _send_fetches(self) -> None:
        """One fetch per leader broker not already fetching, for partitions with nothing buffered."""
        by_address: dict[str, list[tuple[TopicPartition, _PartitionState]]] = {}
        for tp, state in self._states.items():
            if state.paused or state.buffered or state.fetch_position is None:
                continue
            address = self._metadata.leader_address(tp.topic, tp.partition)
            if address is None:
                self._metadata_stale = True
            elif address not in self._fetching:
                by_address.setdefault(address, []).append((tp, state))
        for address, partitions in by_address.items():
            self._send_fetch(address, partitions)

    def _send_fetch(self, address: str, partitions: list[tuple[TopicPartition, _PartitionState]]) -> None:
        topics: dict[str, list[protocol.PartitionFetch]] = {}
        asked = {}
        for tp, state in partitions:
            topics.setdefault(tp.topic, []).append(
                protocol.PartitionFetch(tp.partition, state.fetch_position, self._partition_max_bytes))
            asked[tp] = state.fetch_position
        request = protocol.FetchRequest(self._fetch_max_wait_ms, self._fetch_min_bytes, self._fetch_max_bytes,
                                        [protocol.TopicFetch(topic, parts) for topic, parts in topics.items()])

        def on_response(response: protocol.FetchResponse | None, error: RillError | None) -> None:
            self._fetching.discard(address)
            if error is not None:
                self._metadata_stale = True
                return
            self._on_fetch(response, asked)

        if self._network.send(address, protocol.FETCH, request, on_response,
                              self._timeout_ms + self._fetch_max_wait_ms):
            self._fetching.add(address)
        else:
            self._metadata_stale = True

    def _on_fetch(self, response: protocol.FetchResponse, asked: dict[TopicPartition, int]) -> None:
        for topic in response.topics:
            for answer in topic.partitions:
                tp = TopicPartition(topic.topic, answer.partition)
                state = self._states.get(tp)
                if state is None or state.fetch_position != asked.get(tp):
                    continue  # unassigned or sought elsewhere since the request left
                if answer.error_code:
                    self._on_partition_error(tp, state, error_for_code(answer.error_code, answer.error_message))
                    continue
                state.high_watermark = answer.high_watermark
                if answer.records:
                    state.buffered.append(answer.records)
                    state.fetch_position = _end_offset(answer.records)

    def _on_partition_error(self, tp: TopicPartition, state: _PartitionState, error: RillError) -> None:
        if isinstance(error, OffsetOutOfRangeError):
            if self._reset == "none":
                raise error
            state.position = state.fetch_position = None
            self._initialize_positions()
        elif error.retriable:
            self._metadata_stale = True
        else:
            raise error

    def _refresh_metadata_if_stale(self) -> None:
        if not self._metadata_stale:
            return
        topics = sorted({tp.topic for tp in self._states} | self._subscription)
        try:
            self._metadata.refresh(self._network, topics, self._timeout_ms)
        except RillError:
            time.sleep(RETRY_BACKOFF_S)
            return
        self._metadata_stale = False
        self._follow_subscription()

    # ---- closing ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosedError("the consumer is closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._network.close()
        self._context.term()


def _take(records: deque[Record], count: int) -> list[Record]:
    if count >= len(records):
        taken = list(records)
        records.clear()
        return taken
    return [records.popleft() for _ in range(count)]


def _end_offset(data: bytes) -> int:
    """The offset after the last whole batch of a fetch response (headers only)."""
    position = 0
    last = None
    for _ in range(1_000_000):
        if position >= len(data):
            break
        last = read_header(data, position)
        position += last.size
    return last.next_offset
