"""Fetching: requests to partition leaders, the responses buffered per partition, and decoding them to records.

One fetch request per leader broker is kept in flight, for the partitions
with nothing left undecoded, asking from the offset after what is already
buffered: the broker reads the next data while the application works.
Partitions that have caught up with their high watermark are not fetched
alone while another partition of their leader still has a response
waiting to be decoded: such a fetch would wait (long poll, up to
fetch_max_wait_ms) for new data, and hold up the fetch of that other
partition, which has more to read, until it returned. They go out with it
once its response is decoded.
A response is decoded, a whole one at a time, with bulk column calls
(client/batch.py) when ``collect`` needs records; the partition's next
fetch goes out as its decoding starts, so the broker reads and sends
while the client decodes. ``collect_columns`` (``poll_batch``) decodes
into RecordColumns (client/record_columns.py) instead, never an object
per record; what one leaves decoded the other takes over.

A partition's buffer belongs to one position: after a seek (even to the
offset it is at: the way to retry a record a deserializer failed on for a
passing reason) or a reset, the buffer is dropped and fetching starts again
from the position; a response to a request sent for a dropped buffer is
ignored.

A batch that fails its CRC or does not decode stops its partition, as in
Kafka: ``collect`` returns the records decoded before it, and from the next
call raises CorruptRecordError (naming topic, partition and the offset the
consumer would have returned next) every time, until the application seeks
elsewhere. Positions never pass it, so neither do commits. A record the
consumer's key or value deserializer fails on (client/serialization.py,
run as a response is decoded) stops its partition the same way, with a
DeserializationError at its offset. Not thread-safe.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator

from rill.client import protocol
from rill.client.batch import BatchHeader, check_batch, decode_batch, end_offset
from rill.client.consumer_config import ConsumerConfig
from rill.client.consumer_metrics import ConsumerMetrics
from rill.client.errors import (
    CorruptRecordError,
    DeserializationError,
    OffsetOutOfRangeError,
    RillError,
    error_for_code,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient
from rill.client.record_columns import (
    RecordColumns,
    columns_of_records,
    concat_columns,
    decode_columns,
    deserialize_columns,
    split_columns,
)
from rill.client.serialization import deserialize_records, deserializing
from rill.client.subscription_state import PartitionState, SubscriptionState
from rill.client.types import Record, TopicPartition

log = logging.getLogger(__name__)

MAX_BATCHES_PER_RESPONSE = 1_000_000  # far above what fetch_max_bytes holds
MAX_RESPONSES_PER_COLLECT = 100_000  # a bound on decode steps, far above what max_poll_records needs


class PartitionBuffer:
    """What was fetched for one partition and not yet returned, continuing from ``position``.

    ``decoded_to`` is the offset after the last decoded record, ``fetch_position`` the offset the next
    fetch asks for. ``error`` stops the partition: records before it are returned first. ``seeks`` is the
    partition's seek count when the buffer was made: a later seek makes it stale.
    """

    __slots__ = ("columns", "decoded_to", "error", "fetch_position", "high_watermark", "position", "records", "responses",
                 "seeks")

    def __init__(self, position: int, seeks: int):
        self.position = position
        self.seeks = seeks
        self.decoded_to = position
        self.fetch_position = position
        self.responses: deque[bytes] = deque()  # fetched, not decoded yet
        self.records: deque[Record] = deque()
        self.columns: deque[RecordColumns] = deque()  # decoded for poll_batch, not yet returned
        self.error: RillError | None = None
        self.high_watermark = -1  # as the last fetch answer said; -1 before one

    @property
    def fetchable(self) -> bool:
        return not self.responses and self.error is None

    @property
    def caught_up(self) -> bool:
        """Whether the next fetch would ask from the high watermark on, so the broker has nothing to send yet."""
        return 0 <= self.high_watermark <= self.fetch_position

    @property
    def waiting_to_decode(self) -> bool:
        return bool(self.responses) and self.error is None

    @property
    def has_records(self) -> bool:
        """Decoded records not yet returned, as Records (for poll) or columns (for poll_batch)."""
        return bool(self.records or self.columns)

    def take(self, count: int) -> list[Record]:
        records = self.records
        if count >= len(records):
            taken = list(records)
            records.clear()
        else:
            taken = [records.popleft() for _ in range(count)]
        if taken:
            self.position = taken[-1].offset + 1
        return taken

    def fail(self, error: RillError) -> None:
        self.error = error
        self.responses.clear()


def sticky(error: RillError) -> bool:
    """Errors that stay until the application seeks: a corrupt batch, a record that does not deserialize,
    and a position out of range with auto_offset_reset="error". Others are raised once; the partition is
    fetched again after."""
    return isinstance(error, (CorruptRecordError, DeserializationError, OffsetOutOfRangeError))


class Fetcher:
    """Fetches the subscription's fetchable partitions and hands out their records in offset order."""

    def __init__(self, network: NetworkClient, metadata: ClusterMetadata, subscriptions: SubscriptionState,
                 config: ConsumerConfig, metrics: ConsumerMetrics):
        self._network = network
        self._metrics = metrics
        self._metadata = metadata
        self._subscriptions = subscriptions
        self._config = config
        self._deserialize_key = deserializing(config.key_deserializer)
        self._deserialize_value = deserializing(config.value_deserializer)
        self._buffers: dict[TopicPartition, PartitionBuffer] = {}
        self._fetching: set[str] = set()  # leader addresses with a fetch in flight
        self.metadata_stale = False  # a leader is unknown or moved: the owner refreshes metadata

    def _buffer(self, tp: TopicPartition, state: PartitionState) -> PartitionBuffer:
        """The partition's buffer if it continues from its position with no seek since, else a fresh one."""
        buffer = self._buffers.get(tp)
        if buffer is None or buffer.position != state.position or buffer.seeks != state.seeks:
            buffer = self._buffers[tp] = PartitionBuffer(state.position, state.seeks)
        return buffer

    # ---- records ----------------------------------------------------------------------

    def collect(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` buffered records, moving each partition's position past those returned.

        Raises a partition's error (a corrupt batch, say) only when no record came before it in this call;
        an error found after some records waits for the next call, so those records are not lost.
        """
        out: list[Record] = []
        for records in self._collect_by_partition(max_records, self._drain):
            out += records
        return out

    def _collect_by_partition(self, max_records: int, drain: Callable) -> list:
        """The walk ``collect`` and ``collect_columns`` share: what ``drain(tp, buffer, budget)`` returns for each
        partition that had records (a sized chunk: Records, or RecordColumns), up to ``max_records`` in all,
        positions moved past them; a partition's error is raised only when no record came before it."""
        self._raise_error_found_earlier()
        chunks: list = []
        total = 0
        moved: list[tuple[TopicPartition, int]] = []  # partitions that returned records, and their new positions
        for tp, state in self._subscriptions.fetchable():
            buffer = self._buffer(tp, state)
            chunk = drain(tp, buffer, max_records - total)
            if chunk:
                chunks.append(chunk)
                total += len(chunk)
                moved.append((tp, buffer.position))
            state.position = buffer.position
            if buffer.error is not None and not buffer.has_records:
                if not chunks:
                    self._raise(tp, buffer)
                break
            if total >= max_records:
                break
        if chunks:
            self._metrics.records_returned(total, moved)
        return chunks

    def _raise_error_found_earlier(self) -> None:
        for tp, state in self._subscriptions.fetchable():
            buffer = self._buffers.get(tp)
            if buffer is not None and buffer.position == state.position and buffer.seeks == state.seeks \
                    and buffer.error is not None and not buffer.has_records:
                self._raise(tp, buffer)

    def _raise(self, tp: TopicPartition, buffer: PartitionBuffer) -> None:
        if not sticky(buffer.error):
            del self._buffers[tp]
        raise buffer.error.with_traceback(None)  # raised again each poll: a fresh traceback, not a growing one

    def _drain(self, tp: TopicPartition, buffer: PartitionBuffer, budget: int) -> list[Record]:
        taken: list[Record] = []
        for _ in range(MAX_RESPONSES_PER_COLLECT):
            if len(taken) >= budget:
                break
            if buffer.records:
                taken += buffer.take(budget - len(taken))
            elif buffer.columns:  # left by poll_batch
                buffer.records.extend(buffer.columns.popleft().to_records())
            elif buffer.responses and buffer.error is None:
                self._decode_next_response(tp, buffer)
            else:
                break
        return taken

    def _decode_next_response(self, tp: TopicPartition, buffer: PartitionBuffer) -> None:
        """Decode the oldest buffered response into ``buffer.records`` (its records at or after decoded_to),
        all of it at once, so that the next fetch can go out while the application works through them.
        At a bad batch the records before it are kept and the partition fails."""
        data = self._take_response(tp, buffer)
        records: list[Record] = []
        try:
            for position, _ in self._batches_to_decode(data, buffer.decoded_to):
                records += decode_batch(data, tp.topic, tp.partition, position, check_crc=False)
        except CorruptRecordError as error:
            if self._keep(tp, buffer, records):  # else a record before the bad batch failed to deserialize
                _fail_at_corrupt_batch(tp, buffer, error)
            return
        self._keep(tp, buffer, records)

    def _take_response(self, tp: TopicPartition, buffer: PartitionBuffer) -> bytes:
        """The oldest buffered response, to decode now. If the broker has more, the partition's next fetch goes
        out first, so that the broker reads and sends it while this one is decoded (as Kafka's consumer
        pipelines its fetches). A caught-up partition's fetch, a long poll, goes out after the decode as
        before (one left waiting on the broker would hold up the fetch after a seek), and none while the
        response's end is unknown (a bad batch: the partition fails at it). Only when its leader has no
        fetch in flight: a collect that decodes many partitions' responses looks at the fetches once per
        leader, not once per partition."""
        data = buffer.responses.popleft()
        if buffer.fetch_position > buffer.decoded_to and not buffer.caught_up \
                and self._metadata.leader_address(tp.topic, tp.partition) not in self._fetching:
            self.send_fetches()
        return data

    def _batches_to_decode(self, data: bytes, decoded_to: int) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch of a fetched response holding records at or after ``decoded_to``,
        checked (CRC-32C too with check_crcs); raises CorruptRecordError at a bad batch."""
        read_bytes = 0
        for _ in range(MAX_BATCHES_PER_RESPONSE):
            if read_bytes >= len(data):
                return
            header = check_batch(data, read_bytes, self._config.check_crcs)
            if header.next_offset > decoded_to:
                yield read_bytes, header
            read_bytes += header.size

    def _keep(self, tp: TopicPartition, buffer: PartitionBuffer, records: list[Record]) -> bool:
        """Buffer the decoded records from decoded_to on, deserialized; False if one failed to deserialize
        (those before it are kept, and the partition fails at its offset)."""
        if records and records[0].offset < buffer.decoded_to:
            records = [record for record in records if record.offset >= buffer.decoded_to]
        error = None
        if records and (self._deserialize_key is not None or self._deserialize_value is not None):
            records, error = deserialize_records(records, self._deserialize_key, self._deserialize_value)
        if records:
            buffer.records.extend(records)
            buffer.decoded_to = records[-1].offset + 1
        if error is not None:
            log.error("%s", error)
            buffer.fail(error)
        return error is None

    # ---- record columns (poll_batch) ----------------------------------------------------------

    def collect_columns(self, max_records: int) -> list[RecordColumns]:
        """``collect`` for ``poll_batch``: up to ``max_records`` buffered records as one RecordColumns per
        partition that has some, moving positions past them; errors surface as in ``collect``."""
        return self._collect_by_partition(max_records, self._drain_columns)

    def _drain_columns(self, tp: TopicPartition, buffer: PartitionBuffer, budget: int) -> RecordColumns | None:
        if buffer.records:  # left by poll
            buffer.columns.appendleft(columns_of_records(tp.topic, tp.partition, buffer.records))
            buffer.records.clear()
        parts: list[RecordColumns] = []
        for _ in range(MAX_RESPONSES_PER_COLLECT):
            if budget <= 0:
                break
            if buffer.columns:
                part = buffer.columns.popleft()
                if len(part) > budget:
                    part, rest = split_columns(part, budget)
                    buffer.columns.appendleft(rest)
                parts.append(part)
                budget -= len(part)
            elif buffer.responses and buffer.error is None:
                self._decode_next_response_columns(tp, buffer)
            else:
                break
        if not parts:
            return None
        buffer.position = parts[-1].offsets[-1] + 1
        return concat_columns(parts)

    def _decode_next_response_columns(self, tp: TopicPartition, buffer: PartitionBuffer) -> None:
        """``_decode_next_response`` into columns: one RecordColumns for the whole response."""
        data = self._take_response(tp, buffer)
        parts: list[RecordColumns] = []
        try:
            for position, header in self._batches_to_decode(data, buffer.decoded_to):
                parts.append(decode_columns(data, position, header, tp.topic, tp.partition,
                                            buffer.decoded_to - header.base_offset))
        except CorruptRecordError as error:
            if self._keep_columns(buffer, parts):
                _fail_at_corrupt_batch(tp, buffer, error)
            return
        self._keep_columns(buffer, parts)

    def _keep_columns(self, buffer: PartitionBuffer, parts: list[RecordColumns]) -> bool:
        """``_keep`` for columns: buffer them deserialized; False if a record failed to deserialize."""
        if not parts:
            return True
        columns = concat_columns(parts)
        error = None
        if self._deserialize_key is not None or self._deserialize_value is not None:
            columns, error = deserialize_columns(columns, self._deserialize_key, self._deserialize_value)
        if len(columns):
            buffer.columns.append(columns)
            buffer.decoded_to = columns.offsets[-1] + 1
        if error is not None:
            log.error("%s", error)
            buffer.fail(error)
        return error is None

    # ---- fetch requests -------------------------------------------------------------------

    def send_fetches(self) -> None:
        """One fetch per leader broker not already fetching, for partitions with nothing left to decode."""
        self._forget_unassigned()
        by_address: dict[str, list[tuple[TopicPartition, PartitionBuffer]]] = {}
        decoding: set[str] = set()  # leaders with a partition whose buffered response is not decoded yet
        for tp, state in self._subscriptions.fetchable():
            buffer = self._buffer(tp, state)
            if not buffer.fetchable:
                if buffer.waiting_to_decode:
                    decoding.add(self._metadata.leader_address(tp.topic, tp.partition))
                continue
            address = self._metadata.leader_address(tp.topic, tp.partition)
            if address is None:
                self.metadata_stale = True
            elif address not in self._fetching:
                by_address.setdefault(address, []).append((tp, buffer))
        for address, partitions in by_address.items():
            if address in decoding and all(buffer.caught_up for _, buffer in partitions):
                continue  # a long poll now would hold up the fetch that partition needs next
            self._send_fetch(address, partitions)

    def _forget_unassigned(self) -> None:
        for tp in [tp for tp in self._buffers if tp not in self._subscriptions]:
            del self._buffers[tp]
            self._metrics.partition_forgotten(tp)

    def _send_fetch(self, address: str, partitions: list[tuple[TopicPartition, PartitionBuffer]]) -> None:
        config = self._config
        topics: dict[str, list[protocol.PartitionFetch]] = {}
        asked: dict[TopicPartition, tuple[PartitionBuffer, int]] = {}
        for tp, buffer in partitions:
            topics.setdefault(tp.topic, []).append(
                protocol.PartitionFetch(tp.partition, buffer.fetch_position, config.max_partition_fetch_bytes))
            asked[tp] = (buffer, buffer.fetch_position)
        request = protocol.FetchRequest(config.fetch_max_wait_ms, config.fetch_min_bytes, config.fetch_max_bytes,
                                        [protocol.TopicFetch(topic, parts) for topic, parts in topics.items()])

        def on_response(response: protocol.FetchResponse | None, error: RillError | None) -> None:
            self._fetching.discard(address)
            if error is not None:
                self.metadata_stale = True
                return
            self._metrics.fetch_answered(time.monotonic() - sent_at, sum(
                len(answer.records) for topic in response.topics for answer in topic.partitions))
            self._on_fetch(response, asked)

        sent_at = time.monotonic()
        if self._network.send(address, protocol.FETCH, request, on_response,
                              config.request_timeout_ms + config.fetch_max_wait_ms):
            self._fetching.add(address)
            self._metrics.fetch_sent()
        else:
            self.metadata_stale = True

    def _on_fetch(self, response: protocol.FetchResponse,
                  asked: dict[TopicPartition, tuple[PartitionBuffer, int]]) -> None:
        """Buffer each partition's records; errors are kept for collect to raise (a network callback must
        not raise: it runs inside whatever call is waiting on the network)."""
        for topic in response.topics:
            for answer in topic.partitions:
                tp = TopicPartition(topic.topic, answer.partition)
                buffer, fetch_position = asked.get(tp, (None, None))
                if buffer is None or self._buffers.get(tp) is not buffer or buffer.fetch_position != fetch_position \
                        or tp not in self._subscriptions:
                    continue  # unassigned or sought elsewhere since the request left
                if answer.error_code:
                    self._on_partition_error(tp, buffer, error_for_code(answer.error_code, answer.error_message))
                    continue
                self._metrics.partition_fetched(tp, answer.high_watermark, buffer.position)
                buffer.high_watermark = answer.high_watermark
                if answer.records:
                    self._add_response(buffer, answer.records)

    def _add_response(self, buffer: PartitionBuffer, data: bytes) -> None:
        buffer.responses.append(data)
        try:
            buffer.fetch_position = end_offset(data)
        except CorruptRecordError:
            pass  # decoding stops at the bad batch and fails the partition; no fetch goes out before that

    def _on_partition_error(self, tp: TopicPartition, buffer: PartitionBuffer, error: RillError) -> None:
        if isinstance(error, OffsetOutOfRangeError) and not self._config.raises_without_offset:
            self._subscriptions.seek(tp, None)  # reset per auto_offset_reset before the next fetch
            del self._buffers[tp]
        elif error.retriable:
            self.metadata_stale = True
        else:
            buffer.fail(error)


def _fail_at_corrupt_batch(tp: TopicPartition, buffer: PartitionBuffer, error: CorruptRecordError) -> None:
    """Stop the partition at the bad batch (after the records before it): CorruptRecordError from the next
    call on, at the offset the consumer would return next."""
    log.error("%s-%d: corrupt batch at offset %d: %s", tp.topic, tp.partition, buffer.decoded_to, error)
    buffer.fail(CorruptRecordError(
        f"{tp.topic}-{tp.partition}: the record batch holding offset {buffer.decoded_to} is corrupt "
        f"({error}); seek past it to read on", tp.topic, tp.partition, buffer.decoded_to))
