"""Leader-side data plane: produce, fetch (with long poll) and list offsets.

Holds the partitions this broker hosts, created and dropped to follow the
metadata. A fetch that finds fewer than ``min_bytes`` parks a future per
partition it reads; every append wakes the fetches parked on its partition,
which read again, until they have enough or ``max_wait_ms`` passes. Not
thread-safe: runs on the asyncio loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Awaitable

from rill.client import protocol
from rill.client.errors import (
    InvalidRequestError,
    RillError,
    UnknownTopicError,
)
from rill.node.log.manager import LogManager
from rill.node.metadata_state import TopicState
from rill.node.partition import Partition
from rill.node.topic_config import SETTINGS, log_config

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]
VALID_ACKS = (0, 1, -1)
MAX_WAIT_MS_LIMIT = 60_000


class ReplicaManager:
    """The partitions of this broker and the requests that read and write them."""

    def __init__(self, node_id: int, log_manager: LogManager):
        self.node_id = node_id
        self.log_manager = log_manager
        self.partitions: dict[PartitionKey, Partition] = {}
        self._fetch_waiters: dict[PartitionKey, set[asyncio.Future]] = defaultdict(set)

    # ---- following the metadata ------------------------------------------

    def apply_topic(self, name: str, topic: TopicState | None) -> None:
        """Create, update or delete this broker's replicas of one topic to match the metadata."""
        if topic is None:
            for key in [key for key in self.partitions if key[0] == name]:
                del self.partitions[key]
                self._wake((key,))
            self.log_manager.delete_topic(name)
            return
        storage = log_config(topic.config)
        min_insync = SETTINGS["min.insync.replicas"].parse(topic.config["min.insync.replicas"])
        for index, state in enumerate(topic.partitions):
            key = (name, index)
            if self.node_id not in state.replicas:
                continue
            partition = self.partitions.get(key)
            if partition is None:
                log_ = self.log_manager.get_or_create(name, index, storage)
                self.partitions[key] = Partition(name, index, self.node_id, log_, state, min_insync)
            else:
                partition.update_state(state, min_insync)

    def _partition(self, topic: str, index: int) -> Partition:
        partition = self.partitions.get((topic, index))
        if partition is None:
            raise UnknownTopicError(f"unknown topic or partition {topic}-{index} on broker {self.node_id}")
        return partition

    # ---- produce ------------------------------------------------------------

    def produce(self, request: protocol.ProduceRequest) -> protocol.ProduceResponse | None:
        """Append every partition's batches; a response per partition, or None for acks=0."""
        if request.acks not in VALID_ACKS:
            raise InvalidRequestError(f"acks must be 0, 1 or -1 (all), got {request.acks}")
        topics = []
        appended: list[PartitionKey] = []
        for topic_data in request.topics:
            results = []
            for data in topic_data.partitions:
                results.append(self._produce_partition(topic_data.topic, data, request.acks, appended))
            topics.append(protocol.TopicProduceResponse(topic_data.topic, results))
        self._wake(appended)
        return None if request.acks == 0 else protocol.ProduceResponse(topics)

    def _produce_partition(self, topic: str, data: protocol.PartitionProduceData, acks: int,
                           appended: list[PartitionKey]) -> protocol.PartitionProduceResponse:
        try:
            partition = self._partition(topic, data.partition)
            info = partition.append_as_leader(data.records, acks)
        except RillError as error:
            return protocol.PartitionProduceResponse(data.partition, error.code, str(error), -1, -1)
        appended.append((topic, data.partition))
        return protocol.PartitionProduceResponse(
            data.partition, 0, "", info.first_offset, partition.log.log_start_offset
        )

    # ---- fetch ----------------------------------------------------------------

    def fetch(self, request: protocol.FetchRequest) -> protocol.FetchResponse | Awaitable[protocol.FetchResponse]:
        """Read now; if fewer than min_bytes are there, wait for appends up to max_wait_ms."""
        response, size = self._read(request)
        if size >= max(request.min_bytes, 1) or request.max_wait_ms <= 0 or _has_error(response):
            return response
        return self._long_poll(request, min(request.max_wait_ms, MAX_WAIT_MS_LIMIT) / 1000)

    async def _long_poll(self, request: protocol.FetchRequest, wait_s: float) -> protocol.FetchResponse:
        deadline = time.monotonic() + wait_s
        keys = [(t.topic, p.partition) for t in request.topics for p in t.partitions]
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            woken = loop.create_future()
            for key in keys:
                self._fetch_waiters[key].add(woken)
            try:
                await asyncio.wait_for(woken, remaining)
            except asyncio.TimeoutError:
                break
            finally:
                for key in keys:
                    waiters = self._fetch_waiters.get(key)
                    if waiters is not None:
                        waiters.discard(woken)
                        if not waiters:
                            del self._fetch_waiters[key]
            response, size = self._read(request)
            if size >= request.min_bytes or _has_error(response):
                return response
        return self._read(request)[0]

    def _wake(self, keys) -> None:
        for key in keys:
            for waiter in self._fetch_waiters.get(key, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def _read(self, request: protocol.FetchRequest) -> tuple[protocol.FetchResponse, int]:
        budget = max(request.max_bytes, 1)
        total = 0
        topics = []
        for topic_fetch in request.topics:
            results = []
            for wanted in topic_fetch.partitions:
                limit = max(1, min(wanted.partition_max_bytes, budget - total))
                result = self._read_partition(topic_fetch.topic, wanted, limit if total < budget else 0)
                total += len(result.records)
                results.append(result)
            topics.append(protocol.TopicFetchResponse(topic_fetch.topic, results))
        return protocol.FetchResponse(topics), total

    def _read_partition(self, topic: str, wanted: protocol.PartitionFetch, max_bytes: int) -> protocol.PartitionFetchResponse:
        try:
            partition = self._partition(topic, wanted.partition)
            records = partition.read(wanted.fetch_offset, max_bytes) if max_bytes > 0 else b""
        except RillError as error:
            return protocol.PartitionFetchResponse(wanted.partition, error.code, str(error), -1, -1, b"")
        return protocol.PartitionFetchResponse(
            wanted.partition, 0, "", partition.high_watermark, partition.log.log_start_offset, records
        )

    # ---- list offsets ---------------------------------------------------------

    def list_offsets(self, request: protocol.ListOffsetsRequest) -> protocol.ListOffsetsResponse:
        topics = []
        for topic_request in request.topics:
            results = [self._offset_for(topic_request.topic, wanted) for wanted in topic_request.partitions]
            topics.append(protocol.TopicOffsetsResponse(topic_request.topic, results))
        return protocol.ListOffsetsResponse(topics)

    def _offset_for(self, topic: str, wanted: protocol.PartitionListOffsets) -> protocol.PartitionOffsetResponse:
        try:
            partition = self._partition(topic, wanted.partition)
            partition.ensure_leader()
            if wanted.timestamp == protocol.LATEST_TIMESTAMP:
                return protocol.PartitionOffsetResponse(wanted.partition, 0, "", partition.high_watermark, -1)
            if wanted.timestamp == protocol.EARLIEST_TIMESTAMP:
                return protocol.PartitionOffsetResponse(wanted.partition, 0, "", partition.log.log_start_offset, -1)
            if wanted.timestamp < 0:
                raise InvalidRequestError(f"timestamp {wanted.timestamp} is neither a time nor -1/-2")
            found = partition.log.offset_for_timestamp(wanted.timestamp)
        except RillError as error:
            return protocol.PartitionOffsetResponse(wanted.partition, error.code, str(error), -1, -1)
        if found is None or found[0] >= partition.high_watermark:
            return protocol.PartitionOffsetResponse(wanted.partition, 0, "", -1, -1)
        return protocol.PartitionOffsetResponse(wanted.partition, 0, "", found[0], found[1])


def _has_error(response: protocol.FetchResponse) -> bool:
    return any(p.error_code for t in response.topics for p in t.partitions)
