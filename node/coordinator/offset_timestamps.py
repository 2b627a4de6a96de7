"""OffsetTimestamps (broker-only): where a partition leader's log ends, and when a record at an offset was written.

A group coordinator measures lag in seconds as now minus the timestamp of
the group's first uncommitted record (node/coordinator/lag.py); the record
lives on the partition's leader, which may be another broker. For each
(partition, offset) asked, the leader answers its high watermark and the
timestamp of the first record at or after the offset (below the high
watermark; an offset below the log start counts from the log start, the
oldest record there is), or -1 when there is none: the group is caught up.

Leader side (``offset_timestamps``), bounded: at most
OFFSET_TIMESTAMPS_MAX_PARTITIONS entries per request; each reads the one
batch holding the offset (an index lookup, a header walk and one ``pread``,
on the loop as fetches read). When the offset is the batch's first record
the header's ``first_timestamp`` is the answer; otherwise that batch's
columns are decoded, on a worker thread, to find the record's own
timestamp. Only the coordinator's lag duty (once a second) and
DescribeGroup ask, never the produce or fetch path.

Asking side (``OffsetTimestampLookup``): one request per leader and per
OFFSET_TIMESTAMPS_MAX_PARTITIONS entries, all leaders at once over the
inter-broker client; this broker's own partitions are answered without
the network.
"""

from __future__ import annotations

import asyncio
import logging

from rill.client import protocol
from rill.client.batch import HEADER_SIZE, BatchHeader, decode_payload, read_header
from rill.client.errors import (
    InvalidRequestError,
    OffsetNotAvailableError,
    RillError,
    StorageError,
    UnknownTopicError,
)
from rill.client.types import TopicPartition
from rill.node.metadata.state import MetadataState
from rill.node.network.broker_client import BrokerClient
from rill.node.replication.partition import Partition
from rill.node.replication.replica_manager import ReplicaManager

log = logging.getLogger(__name__)

NO_TIMESTAMP = -1
LOOKUP_TIMEOUT_MS = 2_000  # a leader that does not answer in time leaves its partitions' lag unknown this time
Wanted = tuple[TopicPartition, int]  # a partition and a committed offset (-1: only its high watermark)
Found = tuple[int, int]  # the leader's high watermark and the timestamp (ms) at the offset, or NO_TIMESTAMP


class OffsetTimestampLookup:
    """Asks partition leaders for their high watermark and the timestamp at an offset, on the broker's loop."""

    def __init__(self, node_id: int, state: MetadataState, replicas: ReplicaManager, client: BrokerClient):
        self._node_id = node_id
        self._state = state
        self._replicas = replicas
        self._client = client

    async def lookup(self, wanted: set[Wanted]) -> dict[Wanted, Found]:
        """What each partition's leader answered; a partition whose leader is unknown, unreachable or
        answered an error is left out."""
        by_leader: dict[int, list[Wanted]] = {}
        for entry in sorted(wanted):
            leader = self._leader_of(entry[0])
            if leader >= 0:
                by_leader.setdefault(leader, []).append(entry)
        size = protocol.OFFSET_TIMESTAMPS_MAX_PARTITIONS
        answers = await asyncio.gather(*(self._ask(leader, entries[start:start + size])
                                         for leader, entries in by_leader.items()
                                         for start in range(0, len(entries), size)))
        return {key: value for answer in answers for key, value in answer.items()}

    def _leader_of(self, tp: TopicPartition) -> int:
        topic = self._state.topics.get(tp.topic)
        if topic is None or not 0 <= tp.partition < len(topic.partitions):
            return -1
        return topic.partitions[tp.partition].leader

    async def _ask(self, leader: int, entries: list[Wanted]) -> dict[Wanted, Found]:
        request = _request(entries)
        try:
            if leader == self._node_id:
                response = await offset_timestamps(self._replicas, request)
            else:
                response = await self._client.request(leader, protocol.OFFSET_TIMESTAMPS, request, LOOKUP_TIMEOUT_MS)
        except RillError as error:  # unreachable, timed out, not serving yet: unknown this time
            log.debug("OffsetTimestamps to broker %d failed: %s", leader, error)
            return {}
        return {(TopicPartition(topic.topic, answer.partition), answer.offset):
                (answer.high_watermark, answer.timestamp)
                for topic in response.topics for answer in topic.partitions if not answer.error_code}


def _request(entries: list[Wanted]) -> protocol.OffsetTimestampsRequest:
    topics: dict[str, list[protocol.OffsetTimestampPartition]] = {}
    for tp, offset in entries:
        topics.setdefault(tp.topic, []).append(protocol.OffsetTimestampPartition(tp.partition, offset))
    return protocol.OffsetTimestampsRequest(
        [protocol.OffsetTimestampTopic(name, parts) for name, parts in topics.items()])


async def offset_timestamps(replicas: ReplicaManager, request: protocol.OffsetTimestampsRequest
                            ) -> protocol.OffsetTimestampsResponse:
    """Serve OFFSET_TIMESTAMPS (broker-only); per-partition errors travel in the body."""
    count = sum(len(topic.partitions) for topic in request.topics)
    if count > protocol.OFFSET_TIMESTAMPS_MAX_PARTITIONS:
        raise InvalidRequestError(f"OffsetTimestamps names {count} partitions, more than "
                                  f"{protocol.OFFSET_TIMESTAMPS_MAX_PARTITIONS}")
    topics = []
    for topic in request.topics:
        answers = []
        for wanted in topic.partitions:
            answers.append(await _answer(replicas, topic.topic, wanted))
            await asyncio.sleep(0)  # one batch read at a time: the loop serves others in between
        topics.append(protocol.TopicOffsetTimestamps(topic.topic, answers))
    return protocol.OffsetTimestampsResponse(topics)


async def _answer(replicas: ReplicaManager, topic: str, wanted: protocol.OffsetTimestampPartition
                  ) -> protocol.PartitionOffsetTimestamp:
    try:
        partition = _led(replicas, topic, wanted.partition)
        high_watermark = partition.high_watermark
        timestamp = await _timestamp_at(partition, wanted.offset)
    except RillError as error:
        if isinstance(error, StorageError):
            replicas.storage_failed(topic, wanted.partition, error)
        return protocol.PartitionOffsetTimestamp(wanted.partition, wanted.offset, error.code, str(error), -1,
                                                 NO_TIMESTAMP)
    return protocol.PartitionOffsetTimestamp(wanted.partition, wanted.offset, 0, "", high_watermark, timestamp)


def _led(replicas: ReplicaManager, topic: str, index: int) -> Partition:
    """The partition, if this broker leads it and knows its high watermark (as ListOffsets "latest")."""
    partition = replicas.partitions.get((topic, index))
    if partition is None:
        raise UnknownTopicError(f"unknown topic or partition {topic}-{index} on broker {replicas.node_id}")
    partition.ensure_leader()
    if not partition.high_watermark_known:
        raise OffsetNotAvailableError(f"{partition.name}: the new leader's high watermark is catching up")
    return partition


async def _timestamp_at(partition: Partition, offset: int) -> int:
    """The timestamp of the first record at or after ``offset`` (from the log start if it is below it) that
    is below the high watermark; NO_TIMESTAMP when there is none, or ``offset`` is negative."""
    end = partition.high_watermark
    start = max(offset, partition.log.log_start_offset)
    if offset < 0 or start >= end:
        return NO_TIMESTAMP
    batch = partition.log.read(start, 1, max_offset=end)  # the one batch holding ``start`` (or the next)
    if not batch:
        return NO_TIMESTAMP
    header = read_header(batch)
    if start <= header.base_offset:
        return header.first_timestamp
    return await asyncio.get_running_loop().run_in_executor(None, _record_timestamp, batch, header, start)


def _record_timestamp(batch: bytes, header: BatchHeader, offset: int) -> int:
    """The timestamp of the record at ``offset`` in this batch (decodes its columns: on a worker thread)."""
    _, _, timestamps, _ = decode_payload(header, memoryview(batch)[HEADER_SIZE:header.size])
    return timestamps[min(offset - header.base_offset, len(timestamps) - 1)]
