"""Follower side of replication: fetch from each leader and append what comes back, verbatim.

One task per leader broker fetches every partition this broker follows
from it, as a long poll in a fetch session (fetch_session_builder.py): after
the first, full fetch each fetch names only the partitions whose fetch state
changed, and the leader answers only those with news, so idle partitions
cost nothing per fetch. A partition that starts following (a new leader or
a new epoch) first asks the leader where its own latest epoch ends and cuts
anything after that, so a replica that led before and wrote records nobody
else got drops them before fetching (KIP-101). Truncations run through the
LogManager (their file work off the loop) and only if the partition is
still followed as it was when they were decided. A disk error in a
replica's log takes it offline (``on_storage_error``); offline replicas are
not fetched. Runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Callable

from rill.client import protocol
from rill.client.batch import read_header
from rill.client.errors import (
    OffsetOutOfRangeError,
    RillError,
    StorageError,
    error_for_code,
)
from rill.node.log.disk_work import DiskWork
from rill.node.log.manager import LogManager, StorageErrorListener
from rill.node.network.broker_client import BrokerClient, Spawn
from rill.node.replication.fetch_session_builder import FollowerSession
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
                 on_high_watermark: Callable[[tuple[str, int], Partition], None], spawn: Spawn, *,
                 logs: LogManager, on_storage_error: StorageErrorListener):
        """``spawn`` starts (and supervises) the fetcher task of each leader; such a task may end."""
        self._node_id = node_id
        self._logs = logs
        self._on_storage_error = on_storage_error
        self._follow_numbers = itertools.count()
        self._generations: dict[tuple[str, int], int] = {}  # a number per follow(), to see a re-follow
        self._spawn = spawn
        self._client = client
        self._on_high_watermark = on_high_watermark
        self._following: dict[int, dict[tuple[str, int], Partition]] = {}
        self._needs_truncation: set[tuple[str, int]] = set()
        self._sessions: dict[int, FollowerSession] = {}  # by leader
        self._tasks: dict[int, asyncio.Task] = {}
        self._closed = False

    def follow(self, partition: Partition) -> None:
        """Fetch ``partition`` from its current leader, after checking for divergence."""
        self.unfollow(partition)
        leader = partition.state.leader
        if leader < 0 or leader == self._node_id or self._closed or partition.offline:
            return
        key = (partition.topic, partition.index)
        self._generations[key] = next(self._follow_numbers)
        self._following.setdefault(leader, {})[key] = partition
        self._needs_truncation.add(key)
        self._session(leader).mark(key)
        task = self._tasks.get(leader)
        if task is None or task.done():
            self._tasks[leader] = self._spawn(f"replica fetcher from broker {leader}", self._run(leader))

    def unfollow(self, partition: Partition) -> None:
        key = (partition.topic, partition.index)
        for leader, partitions in self._following.items():
            if partitions.pop(key, None) is not None:
                self._session(leader).mark(key)
        self._needs_truncation.discard(key)
        self._generations.pop(key, None)

    def _session(self, leader: int) -> FollowerSession:
        session = self._sessions.get(leader)
        if session is None:
            session = self._sessions[leader] = FollowerSession(self._node_id)
        return session

    def _changed(self, key: tuple[str, int], leader: int) -> None:
        """Name the partition in the next fetch from ``leader`` (its log end moved, or it must be retried)."""
        self._session(leader).mark(key)

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
                self._session(leader).restart()
                await asyncio.sleep(RETRY_BACKOFF_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replica fetcher for broker %d failed", leader)
                self._session(leader).restart()
                await asyncio.sleep(RETRY_BACKOFF_S)
        self._tasks.pop(leader, None)
        self._session(leader).restart()

    async def _truncate(self, leader: int) -> None:
        """Ask the leader where our latest epoch ends and cut our log there (KIP-101)."""
        following = self._following.get(leader, {})
        partitions = {key: following[key] for key in self._needs_truncation if key in following}
        if not partitions:
            return
        generations = {key: self._generations[key] for key in partitions}
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
                if partition is None or not self._still_following(key, generations[key]):
                    continue
                if answer.error_code:
                    log.debug("%s: leader epoch lookup failed: %s", partition.name, answer.error_message)
                    continue
                await self._cut(key, partition, answer.leader_epoch, answer.end_offset, generations[key])
                if self._still_following(key, generations[key]):
                    self._needs_truncation.discard(key)
                    self._changed(key, leader)

    def _still_following(self, key: tuple[str, int], generation: int) -> bool:
        """Whether the partition is followed as it was when ``generation`` was read (no re-follow since)."""
        return self._generations.get(key) == generation

    async def _cut(self, key: tuple[str, int], partition: Partition, leader_epoch: int, end_offset: int,
                   generation: int) -> None:
        log_ = partition.log
        if end_offset < 0:
            target = min(partition.high_watermark, log_.log_end_offset)  # leader knows no such epoch
        else:
            target = min(end_offset, log_.log_end_offset)
        if target < log_.log_end_offset:
            log.info("%s: truncating from %d to %d to match the leader (epoch %d)",
                     partition.name, log_.log_end_offset, target, leader_epoch)
            await self._truncate_log(key, partition, lambda: log_.start_truncation(target), generation)
        partition.high_watermark = min(partition.high_watermark, log_.log_end_offset)

    async def _truncate_log(self, key: tuple[str, int], partition: Partition, start: Callable[[], DiskWork],
                            generation: int) -> None:
        """Truncate through the LogManager if still following as of ``generation``; a disk error takes the
        replica offline."""
        try:
            await self._logs.truncate(partition.log, start, lambda: self._still_following(key, generation))
        except StorageError as error:
            self._on_storage_error(partition.topic, partition.index, error)

    async def _fetch_once(self, leader: int) -> None:
        following = self._following.get(leader, {})
        session = self._session(leader)
        if len(self._needs_truncation) >= len(following) and all(key in self._needs_truncation for key in following):
            await asyncio.sleep(RETRY_BACKOFF_S)  # nothing to fetch until truncations finish
            return
        request = session.request(following, self._fetch_state(following), self._generations.__getitem__,
                                  FETCH_MAX_WAIT_MS, FETCH_MAX_BYTES, PARTITION_MAX_BYTES)
        response = await self._client.request(leader, protocol.FETCH, request,
                                              REQUEST_TIMEOUT_MS + FETCH_MAX_WAIT_MS)
        if not session.answered(response):
            log.debug("fetch session with broker %d starts over (error %d)", leader, response.error_code)
            return
        failed = False
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.topic, answer.partition)
                partition = following.get(key)
                sent = session.sent.get(key)
                if partition is None or sent is None or key in self._needs_truncation \
                        or not self._still_following(key, sent[1]):
                    continue  # moved to another leader (or followed anew) while the fetch was out
                offset = partition.log.log_end_offset
                failed_here = await self._apply(key, partition, answer, sent[0], sent[1])
                if failed_here or partition.log.log_end_offset != offset or key in self._needs_truncation:
                    self._changed(key, leader)  # the next fetch names it: a new offset, or a retry
                failed |= failed_here
        if failed:
            await asyncio.sleep(RETRY_BACKOFF_S)

    def _fetch_state(self, following: dict[tuple[str, int], Partition]):
        """Where each followed partition fetches from now: None if it is not fetched (gone, truncating)."""
        def state(key: tuple[str, int]) -> tuple[int, int, str] | None:
            partition = following.get(key)
            if partition is None or key in self._needs_truncation:
                return None
            return partition.log.log_end_offset, partition.state.leader_epoch, partition.topic_id
        return state

    async def _apply(self, key: tuple[str, int], partition: Partition, answer: protocol.PartitionFetchResponse,
                     fetch_offset: int, generation: int) -> bool:
        """Append one partition's answer; True if it failed (so the loop backs off).

        The first batch starts at the offset asked, or (compacted topics) after a gap the cleaner left.
        """
        if answer.error_code:
            error = error_for_code(answer.error_code, answer.error_message)
            if isinstance(error, OffsetOutOfRangeError):
                await self._out_of_range(key, partition, answer, generation)
            return True
        if answer.records and not _follows(partition, fetch_offset, _first_offset(answer.records)):
            self._needs_truncation.add(key)  # the log moved under the fetch (truncated meanwhile)
            return True
        before = partition.high_watermark
        try:
            partition.append_as_follower(answer.records, answer.high_watermark)
        except StorageError as error:
            self._on_storage_error(partition.topic, partition.index, error)
            return True
        if partition.high_watermark != before:
            self._on_high_watermark(key, partition)
        return False

    async def _out_of_range(self, key: tuple[str, int], partition: Partition,
                            answer: protocol.PartitionFetchResponse, generation: int) -> None:
        log_ = partition.log
        if 0 <= log_.log_end_offset < answer.log_start_offset:
            log.info("%s: behind the leader's log start %d, starting over there", partition.name,
                     answer.log_start_offset)
            await self._truncate_log(key, partition, lambda: log_.start_full_truncation(answer.log_start_offset),
                                     generation)
        else:
            self._needs_truncation.add(key)


def _follows(partition: Partition, fetch_offset: int, first_offset: int) -> bool:
    """Whether fetched batches starting at ``first_offset`` continue this replica's log."""
    end = partition.log.log_end_offset
    if end != fetch_offset:
        return False
    return first_offset == end or (partition.log.config.compact and first_offset > end)


def _first_offset(records: bytes) -> int:
    return read_header(records).base_offset
