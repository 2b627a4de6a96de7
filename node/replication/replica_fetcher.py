"""Follower side of replication: fetch from each leader and append what comes back, verbatim.

One task per leader broker fetches every partition this broker follows
from it, as a long poll. A partition that starts following (a new leader or
a new epoch) first asks the leader where its own latest epoch ends and cuts
anything after that, so a replica that led before and wrote records nobody
else got drops them before fetching (KIP-101). Runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from rill.client import protocol
from rill.client.batch import read_header
from rill.client.errors import OffsetOutOfRangeError, RillError, error_for_code
from rill.node.network.broker_client import BrokerClient
from rill.node.replication.partition import Partition

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 500
FETCH_MAX_BYTES = 16 * 1024 * 1024
PARTITION_MAX_BYTES = 4 * 1024 * 1024
REQUEST_TIMEOUT_MS = 3_000
RETRY_BACKOFF_S = 0.05


class ReplicaFetcher:
    """Keeps this broker's follower replicas up to date with their leaders."""

    def __init__(self, node_id: int, client: BrokerClient,
                 on_high_watermark: Callable[[tuple[str, int], Partition], None]):
        self._node_id = node_id
        self._client = client
        self._on_high_watermark = on_high_watermark
        self._following: dict[int, dict[tuple[str, int], Partition]] = {}
        self._needs_truncation: set[tuple[str, int]] = set()
        self._tasks: dict[int, asyncio.Task] = {}
        self._closed = False

    def follow(self, partition: Partition) -> None:
        """Fetch ``partition`` from its current leader, after checking for divergence."""
        self.unfollow(partition)
        leader = partition.state.leader
        if leader < 0 or leader == self._node_id or self._closed:
            return
        key = (partition.topic, partition.index)
        self._following.setdefault(leader, {})[key] = partition
        self._needs_truncation.add(key)
        task = self._tasks.get(leader)
        if task is None or task.done():
            self._tasks[leader] = asyncio.ensure_future(self._run(leader))

    def unfollow(self, partition: Partition) -> None:
        key = (partition.topic, partition.index)
        for partitions in self._following.values():
            partitions.pop(key, None)
        self._needs_truncation.discard(key)

    def close(self) -> None:
        """Stop fetching; metadata changes that arrive while the broker shuts down start nothing new."""
        self._closed = True
        for task in self._tasks.values():
            task.cancel()

    async def _run(self, leader: int) -> None:
        while self._following.get(leader):
            try:
                await self._truncate(leader)
                await self._fetch_once(leader)
            except RillError as error:
                log.debug("fetch from broker %d failed: %s", leader, error)
                await asyncio.sleep(RETRY_BACKOFF_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replica fetcher for broker %d failed", leader)
                await asyncio.sleep(RETRY_BACKOFF_S)
        self._tasks.pop(leader, None)

    async def _truncate(self, leader: int) -> None:
        """Ask the leader where our latest epoch ends and cut our log there (KIP-101)."""
        partitions = {key: p for key, p in self._following.get(leader, {}).items() if key in self._needs_truncation}
        if not partitions:
            return
        by_topic: dict[str, list[protocol.PartitionEpochRequest]] = {}
        topic_ids: dict[str, str] = {}
        for (topic, index), partition in partitions.items():
            epoch = partition.log.latest_epoch
            by_topic.setdefault(topic, []).append(protocol.PartitionEpochRequest(index, -1 if epoch is None else epoch))
            topic_ids[topic] = partition.topic_id
        request = protocol.OffsetsForLeaderEpochRequest(
            [protocol.TopicEpochRequest(topic, parts, topic_ids[topic]) for topic, parts in by_topic.items()])
        response = await self._client.request(leader, protocol.OFFSETS_FOR_LEADER_EPOCH, request, REQUEST_TIMEOUT_MS)
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.topic, answer.partition)
                partition = partitions.get(key)
                if partition is None or self._following.get(leader, {}).get(key) is not partition:
                    continue
                if answer.error_code:
                    log.debug("%s: leader epoch lookup failed: %s", partition.name, answer.error_message)
                    continue
                self._cut(partition, answer.leader_epoch, answer.end_offset)
                self._needs_truncation.discard(key)

    @staticmethod
    def _cut(partition: Partition, leader_epoch: int, end_offset: int) -> None:
        log_ = partition.log
        if end_offset < 0:
            target = min(partition.high_watermark, log_.log_end_offset)  # leader knows no such epoch
        else:
            target = min(end_offset, log_.log_end_offset)
        if target < log_.log_end_offset:
            log.info("%s: truncating from %d to %d to match the leader (epoch %d)",
                     partition.name, log_.log_end_offset, target, leader_epoch)
            log_.truncate_to(target)
        partition.high_watermark = min(partition.high_watermark, log_.log_end_offset)

    async def _fetch_once(self, leader: int) -> None:
        partitions = {key: p for key, p in self._following.get(leader, {}).items() if key not in self._needs_truncation}
        if not partitions:
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        by_topic: dict[str, list[protocol.PartitionFetch]] = {}
        topic_ids: dict[str, str] = {}
        asked = {key: partition.log.log_end_offset for key, partition in partitions.items()}
        for (topic, index), partition in partitions.items():
            by_topic.setdefault(topic, []).append(protocol.PartitionFetch(
                index, asked[(topic, index)], PARTITION_MAX_BYTES, partition.state.leader_epoch))
            topic_ids[topic] = partition.topic_id
        request = protocol.FetchRequest(FETCH_MAX_WAIT_MS, 1, FETCH_MAX_BYTES,
                                        [protocol.TopicFetch(t, parts, topic_ids[t]) for t, parts in by_topic.items()],
                                        replica_id=self._node_id)
        response = await self._client.request(leader, protocol.FETCH, request,
                                              REQUEST_TIMEOUT_MS + FETCH_MAX_WAIT_MS)
        failed = False
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.topic, answer.partition)
                partition = partitions.get(key)
                if partition is None or self._following.get(leader, {}).get(key) is not partition:
                    continue  # moved to another leader while the fetch was out
                failed |= self._apply(key, partition, answer, asked[key])
        if failed:
            await asyncio.sleep(RETRY_BACKOFF_S)

    def _apply(self, key: tuple[str, int], partition: Partition, answer: protocol.PartitionFetchResponse,
               fetch_offset: int) -> bool:
        """Append one partition's answer; True if it failed (so the loop backs off).

        The first batch starts at the offset asked, or (compacted topics) after a gap the cleaner left.
        """
        if answer.error_code:
            error = error_for_code(answer.error_code, answer.error_message)
            if isinstance(error, OffsetOutOfRangeError):
                self._out_of_range(partition, answer)
            return True
        if answer.records and not _follows(partition, fetch_offset, _first_offset(answer.records)):
            self._needs_truncation.add(key)  # the log moved under the fetch (truncated meanwhile)
            return True
        before = partition.high_watermark
        partition.append_as_follower(answer.records, answer.high_watermark)
        if partition.high_watermark != before:
            self._on_high_watermark(key, partition)
        return False

    def _out_of_range(self, partition: Partition, answer: protocol.PartitionFetchResponse) -> None:
        log_ = partition.log
        if 0 <= log_.log_end_offset < answer.log_start_offset:
            log.info("%s: behind the leader's log start %d, starting over there", partition.name,
                     answer.log_start_offset)
            log_.truncate_fully_and_start_at(answer.log_start_offset)
        else:
            self._needs_truncation.add((partition.topic, partition.index))


def _follows(partition: Partition, fetch_offset: int, first_offset: int) -> bool:
    """Whether fetched batches starting at ``first_offset`` continue this replica's log."""
    end = partition.log.log_end_offset
    if end != fetch_offset:
        return False
    return first_offset == end or (partition.log.config.compact and first_offset > end)


def _first_offset(records: bytes) -> int:
    return read_header(records).base_offset
