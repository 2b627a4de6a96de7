"""The group coordinator: consumer groups and committed offsets for this broker's offsets partitions.

Group G is coordinated by the leader of ``__consumer_offsets`` partition
``partition_for(G)`` (docs/architecture.md, 10). Any broker
answers FindCoordinator from the metadata, creating the internal topic on
first use. Commits are appended to the group's partition with acks=all and
enter the in-memory cache once the in-sync replicas have them; when this
broker becomes a partition's leader it replays the partition to rebuild
the offsets, and when it stops leading one it forgets those groups
(members join again at the new coordinator). Runs on the broker's asyncio
loop; membership work is in-memory, only commits and deletes await.

``GroupLimits`` bounds what clients can make it hold: new groups beyond
``max_groups`` (TooManyGroupsError), members beyond ``group_max_size``
(GroupMaxSizeReachedError), subscription patterns longer than
``max_subscription_pattern_length`` (InvalidRegularExpressionError; patterns
are RE2, matched in linear time: consumer_group.py), and commits whose
metadata is longer than ``offset_metadata_max_bytes``
(OffsetMetadataTooLargeError) or that name a partition the cluster does not
have (UnknownTopicError, as in Kafka), so a group's offsets are at most one
per partition. Groups replayed from the log are loaded whatever their number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from rill.client import protocol
from rill.client.batch import end_offset
from rill.client.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupIdNotFoundError,
    GroupMaxSizeReachedError,
    GroupNotEmptyError,
    InvalidGroupIdError,
    InvalidRegularExpressionError,
    NotCoordinatorError,
    NotLeaderError,
    OffsetMetadataTooLargeError,
    RillError,
    StorageError,
    TooManyGroupsError,
    TopicAlreadyExistsError,
    UnknownTopicError,
    error_for_code,
)
from rill.client.types import TopicPartition
from rill.node.coordinator.consumer_group import JOIN_EPOCH, LEAVE_EPOCH, CommittedOffset, ConsumerGroup
from rill.node.coordinator.lag import GroupLag, LagMonitor, PartitionLagReading
from rill.node.coordinator.offset_records import (
    OFFSETS_PARTITIONS,
    OFFSETS_TOPIC,
    commit_batch,
    partition_for,
    replay,
)
from rill.node.metadata.state import MetadataState
from rill.node.replication.partition import Partition
from rill.node.replication.replica_manager import ReplicaManager

log = logging.getLogger(__name__)

MAX_GROUP_ID_LENGTH = 249
COMMIT_TIMEOUT_MS = 5_000
REPLAY_READ_BYTES = 1 << 20
REJOIN_WINDOW_S = 3.0  # after loading a partition, members rejoining keep what they own before others get it

TopicCreator = Callable[[str, int, int, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class GroupLimits:
    """What clients may make the coordinator hold (NodeConfig has each one's meaning)."""

    max_groups: int
    group_max_size: int
    offset_metadata_max_bytes: int
    max_subscription_pattern_length: int


class GroupCoordinator:
    """Serves the group APIs for the groups whose offsets partition this broker leads."""

    def __init__(self, node_id: int, state: MetadataState, replicas: ReplicaManager, create_topic: TopicCreator,
                 offsets_segment_bytes: int, limits: GroupLimits, *, lag: LagMonitor):
        """``lag`` reads the groups' lag (lag.py): each round of ``measure_lag`` and in DescribeGroup."""
        self._node_id = node_id
        self._lag = lag
        self._limits = limits
        self._offsets_segment_bytes = offsets_segment_bytes
        self._state = state
        self._replicas = replicas
        self._create_topic = create_topic
        self._creating = False
        self._groups: dict[int, dict[str, ConsumerGroup]] = {}  # offsets partition -> its loaded groups
        self._loading: dict[int, asyncio.Task] = {}  # offsets partition -> the replay of its log
        self._has_members = asyncio.Event()  # set when a heartbeat leaves a group with members

    # ---- leadership of the offsets partitions --------------------------------------------

    def partition_role_changed(self, partition: Partition, role: str) -> None:
        """Load a partition's groups when this broker starts leading it, in the background (its groups answer
        CoordinatorLoadInProgress meanwhile); forget them when it stops."""
        if partition.topic != OFFSETS_TOPIC:
            return
        self._groups.pop(partition.index, None)
        loading = self._loading.pop(partition.index, None)
        if loading is not None:
            loading.cancel()
        if role == "leader":
            self._loading[partition.index] = asyncio.ensure_future(self._load(partition))

    async def _load(self, partition: Partition) -> None:
        try:
            groups = await self._replay(partition)
        except StorageError as error:
            self._replicas.storage_failed(partition.topic, partition.index, error)
            return
        except RillError:
            log.exception("%s: loading the committed offsets failed", partition.name)
            return
        finally:
            if self._loading.get(partition.index) is asyncio.current_task():
                del self._loading[partition.index]
        self._groups[partition.index] = groups

    async def _replay(self, partition: Partition) -> dict[str, ConsumerGroup]:
        """The groups with committed offsets in the partition's log. Reads on the loop, a short pread of
        REPLAY_READ_BYTES at a time; decodes on a worker thread, so the loop keeps serving meanwhile."""
        loop = asyncio.get_running_loop()
        groups: dict[str, ConsumerGroup] = {}
        offset = partition.log.log_start_offset
        end = partition.log.log_end_offset
        for _ in range(10_000_000):
            if offset >= end:
                break
            data = partition.log.read(offset, REPLAY_READ_BYTES)
            if not data:
                break
            for record in await loop.run_in_executor(None, _replayed, data, partition.index):
                group = groups.get(record.group_id) or groups.setdefault(record.group_id,
                                                                          ConsumerGroup(record.group_id))
                if record.offset is None:
                    group.offsets.pop(record.partition, None)
                else:
                    group.offsets[record.partition] = CommittedOffset(record.offset, record.metadata)
            offset = end_offset(data)
        loaded = {group_id: group for group_id, group in groups.items() if group.offsets}
        for group in loaded.values():
            group.claims_until = time.monotonic() + REJOIN_WINDOW_S
        log.info("%s-%d: loaded %d groups", OFFSETS_TOPIC, partition.index, len(loaded))
        return loaded

    def topics_changed(self) -> None:
        """Topics were created, deleted or grew: groups subscribed to them rebalance."""
        counts = self._partition_counts()
        for groups in self._groups.values():
            for group in groups.values():
                if group.members:
                    group.topics_changed(counts)

    async def expire_members(self) -> None:
        """Drop members whose session timed out; their partitions go to the others.

        A periodic duty. While this broker coordinates no member it waits
        until a heartbeat adds one, so a broker without consumers is not
        woken by the session checks.
        """
        if not any(group.members for group in self.held_groups()):
            self._has_members.clear()
            await self._has_members.wait()
        now = time.monotonic()
        for groups in self._groups.values():
            for group in list(groups.values()):
                gone = group.expire(now)
                if gone:
                    log.info("group %s: session expired for %s", group.group_id, ", ".join(gone))
                    group.rebalance(self._partition_counts())
                    self._forget_if_empty(group)

    async def measure_lag(self) -> None:
        """A periodic duty: read the lag of the groups held here (a bounded number of partitions per run)."""
        await self._lag.run_round(self.held_groups())

    def lag_readings(self) -> list[GroupLag]:
        """Every held group's lag as last measured by ``measure_lag`` (for /metrics), sorted by group id."""
        return [self._lag.latest[group_id] for group_id in sorted(self._lag.latest)]

    # ---- finding the coordinator ----------------------------------------------------------------

    def find_coordinator(self, request: protocol.FindCoordinatorRequest) -> protocol.FindCoordinatorResponse:
        try:
            _check_group_id(request.group_id)
            node_id = self._coordinator_of(request.group_id)
        except RillError as error:
            return protocol.FindCoordinatorResponse(error.code, str(error), -1, "", -1)
        broker = self._state.brokers[node_id]
        return protocol.FindCoordinatorResponse(0, "", node_id, broker.host, broker.port)

    def _coordinator_of(self, group_id: str) -> int:
        topic = self._state.topics.get(OFFSETS_TOPIC)
        if topic is None:
            self._ensure_offsets_topic()
            raise CoordinatorNotAvailableError(f"{OFFSETS_TOPIC} is being created; retry")
        leader = topic.partitions[partition_for(group_id)].leader
        broker = self._state.brokers.get(leader)
        if broker is None or broker.fenced:
            raise CoordinatorNotAvailableError(f"the offsets partition of group {group_id!r} has no leader now")
        return leader

    def _ensure_offsets_topic(self) -> None:
        if self._creating:
            return
        self._creating = True
        replication = min(3, max(1, len(self._state.live_brokers())))
        config = {"cleanup.policy": "compact", "segment.bytes": str(self._offsets_segment_bytes),
                  "min.insync.replicas": str(min(2, replication))}

        async def create() -> None:
            try:
                await self._create_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, replication, config)
                log.info("created %s (%d partitions, replication %d)", OFFSETS_TOPIC, OFFSETS_PARTITIONS, replication)
            except TopicAlreadyExistsError:
                pass
            except RillError as error:
                log.info("creating %s failed (a later FindCoordinator retries): %s", OFFSETS_TOPIC, error)
            except Exception:  # noqa: BLE001 - a bug: nobody awaits this task, so say it here
                log.exception("creating %s failed (a later FindCoordinator retries)", OFFSETS_TOPIC)
            finally:
                self._creating = False

        asyncio.ensure_future(create())

    # ---- membership -------------------------------------------------------------------------------

    def heartbeat(self, request: protocol.ConsumerGroupHeartbeatRequest
                  ) -> protocol.ConsumerGroupHeartbeatResponse:
        try:
            _check_group_id(request.group_id)
            groups = self._groups_of(request.group_id)
            group = self._group_for(groups, request.group_id, request.member_epoch == JOIN_EPOCH)
            self._check_member_limits(group, request)
            owned = {TopicPartition(t.topic, p) for t in request.owned for p in t.partitions}
            result = group.heartbeat(request.member_id, request.member_epoch, request.client_id,
                                     request.subscribed_topics, request.subscribed_pattern, request.assignor,
                                     request.session_timeout_ms, owned, self._partition_counts())
        except RillError as error:
            return protocol.ConsumerGroupHeartbeatResponse(error.code, str(error), request.member_id, -1, 0, [])
        if group.members:
            groups[group.group_id] = group
            self._has_members.set()
        else:
            self._forget_if_empty(group)
        return protocol.ConsumerGroupHeartbeatResponse(0, "", result.member_id, result.member_epoch,
                                                       result.heartbeat_interval_ms,
                                                       protocol.topic_partitions(result.assignment))

    # ---- offsets ----------------------------------------------------------------------------------

    def commit(self, request: protocol.OffsetCommitRequest
               ) -> protocol.OffsetCommitResponse | Awaitable[protocol.OffsetCommitResponse]:
        """Check the commit now, in request order with heartbeats; then append it and wait for the ISR."""
        try:
            _check_group_id(request.group_id)
            groups = self._groups_of(request.group_id)
            group = self._group_for(groups, request.group_id, True)
            wanted = [(TopicPartition(t.topic, p.partition), p.offset, p.metadata)
                      for t in request.topics for p in t.partitions]
            refused = {**self._refused_by_limits(wanted),
                       **group.check_commit(request.member_id, request.member_epoch,
                                            [(tp, offset) for tp, offset, _ in wanted])}
        except RillError as error:
            return protocol.OffsetCommitResponse(error.code, str(error), [])
        accepted = [entry for entry in wanted if entry[0] not in refused]
        response = protocol.OffsetCommitResponse(0, "", _commit_results(wanted, refused))
        if not accepted:
            return response
        return self._store_commit(groups, group, accepted, response)

    async def _store_commit(self, groups: dict[str, ConsumerGroup], group: ConsumerGroup,
                            accepted: list[tuple[TopicPartition, int, str]],
                            response: protocol.OffsetCommitResponse) -> protocol.OffsetCommitResponse:
        try:
            await self._append(group.group_id, accepted)
        except RillError as error:
            return protocol.OffsetCommitResponse(error.code, str(error), [])
        group = groups.setdefault(group.group_id, group)
        for tp, offset, metadata in accepted:
            group.offsets[tp] = CommittedOffset(offset, metadata)
        return response

    async def _append(self, group_id: str, offsets: list[tuple[TopicPartition, int | None, str]]) -> None:
        """Write commits (or tombstones) to the group's partition; returns once the ISR has them."""
        index = partition_for(group_id)
        request = protocol.ProduceRequest(-1, COMMIT_TIMEOUT_MS, [protocol.TopicProduceData(
            OFFSETS_TOPIC, [protocol.PartitionProduceData(index, commit_batch(group_id, offsets))])])
        response = self._replicas.produce(request, internal=True)
        if not isinstance(response, protocol.ProduceResponse):
            response = await response
        result = response.topics[0].partitions[0]
        if result.error_code:
            error = error_for_code(result.error_code, result.error_message)
            if isinstance(error, NotLeaderError):
                raise NotCoordinatorError(f"this broker stopped coordinating group {group_id!r}")
            raise error

    def fetch_offsets(self, request: protocol.OffsetFetchRequest) -> protocol.OffsetFetchResponse:
        try:
            _check_group_id(request.group_id)
            group = self._groups_of(request.group_id).get(request.group_id)
        except RillError as error:
            return protocol.OffsetFetchResponse(error.code, str(error), [])
        offsets = group.offsets if group is not None else {}
        if request.topics is None:
            wanted = sorted(offsets)
        else:
            wanted = [TopicPartition(t.topic, p) for t in request.topics for p in t.partitions]
        return protocol.OffsetFetchResponse(0, "", _committed_by_topic(wanted, offsets))

    # ---- administration ----------------------------------------------------------------------------

    def list_groups(self, request: protocol.ListGroupsRequest) -> protocol.ListGroupsResponse:
        return protocol.ListGroupsResponse([
            protocol.GroupListing(group.group_id, group.state, len(group.members))
            for groups in self._groups.values() for group in groups.values()
        ])

    def held_groups(self) -> list[ConsumerGroup]:
        """Every group this broker coordinates now, loaded (for /metrics); read them on the loop only."""
        return [group for groups in self._groups.values() for group in groups.values()]

    def describe_group(self, request: protocol.DescribeGroupRequest
                       ) -> protocol.DescribeGroupResponse | Awaitable[protocol.DescribeGroupResponse]:
        """Members, committed offsets, and the lag read now from the partitions' leaders (lag.py)."""
        try:
            _check_group_id(request.group_id)
            group = self._groups_of(request.group_id).get(request.group_id)
            if group is None:
                raise GroupIdNotFoundError(f"no group {request.group_id!r}")
        except RillError as error:
            return protocol.DescribeGroupResponse(error.code, str(error), request.group_id, "Dead", -1, "", [], [])
        members = [
            protocol.MemberDescription(m.member_id, m.client_id, m.epoch, sorted(m.topics), m.pattern,
                                       protocol.topic_partitions(m.granted))
            for m in sorted(group.members.values(), key=lambda m: m.member_id)
        ]
        described = protocol.DescribeGroupResponse(0, "", group.group_id, group.state, group.epoch, group.assignor,
                                                   members, _committed_by_topic(sorted(group.offsets), group.offsets))
        return self._with_lag(described, group)

    async def _with_lag(self, described: protocol.DescribeGroupResponse, group: ConsumerGroup
                        ) -> protocol.DescribeGroupResponse:
        lag = await self._lag.describe(group)
        described.lag_state = lag.state
        described.partitions = [_partition_lag(reading) for reading in lag.partitions]
        return described

    async def delete_group(self, request: protocol.DeleteGroupRequest) -> protocol.DeleteGroupResponse:
        try:
            _check_group_id(request.group_id)
            groups = self._groups_of(request.group_id)
            group = groups.get(request.group_id)
            if group is None:
                raise GroupIdNotFoundError(f"no group {request.group_id!r}")
            if group.members:
                raise GroupNotEmptyError(
                    f"group {request.group_id!r} has {len(group.members)} members: stop them first")
            if group.offsets:
                await self._append(group.group_id, [(tp, None, "") for tp in sorted(group.offsets)])
        except RillError as error:
            return protocol.DeleteGroupResponse(error.code, str(error))
        if not group.members:
            groups.pop(group.group_id, None)
        return protocol.DeleteGroupResponse(0, "")

    # ---- limits -------------------------------------------------------------------------------------

    def _group_for(self, groups: dict[str, ConsumerGroup], group_id: str, creating: bool) -> ConsumerGroup:
        """The loaded group, or a new empty one (stored once it has members or offsets); with
        ``creating``, a new one only while this coordinator holds fewer than ``max_groups``."""
        group = groups.get(group_id)
        if group is not None:
            return group
        count = sum(len(loaded) for loaded in self._groups.values())
        if creating and count >= self._limits.max_groups:
            raise TooManyGroupsError(f"this coordinator holds {count} groups, the most the broker allows "
                                     f"(max_groups): group {group_id!r} cannot start; delete unused groups")
        return ConsumerGroup(group_id)

    def _check_member_limits(self, group: ConsumerGroup, request: protocol.ConsumerGroupHeartbeatRequest) -> None:
        if request.member_epoch == LEAVE_EPOCH:
            return
        length, limit = len(request.subscribed_pattern), self._limits.max_subscription_pattern_length
        if length > limit:
            raise InvalidRegularExpressionError(f"the subscription pattern has {length} characters, more than the "
                                                f"broker accepts ({limit}, max_subscription_pattern_length)")
        joining = request.member_epoch == JOIN_EPOCH and request.member_id not in group.members
        if joining and len(group.members) >= self._limits.group_max_size:
            raise GroupMaxSizeReachedError(f"group {group.group_id!r} has {len(group.members)} members, the most "
                                           f"the broker allows (group_max_size)")

    def _refused_by_limits(self, wanted: list[tuple[TopicPartition, int, str]]) -> dict[TopicPartition, RillError]:
        """Commits refused for naming a partition the cluster does not have, or for too much metadata."""
        counts = self._partition_counts()
        limit = self._limits.offset_metadata_max_bytes
        refused: dict[TopicPartition, RillError] = {}
        for tp, _, metadata in wanted:
            size = len(metadata.encode())
            if not 0 <= tp.partition < counts.get(tp.topic, 0):
                refused[tp] = UnknownTopicError(f"unknown topic or partition {tp.topic}-{tp.partition}")
            elif size > limit:
                refused[tp] = OffsetMetadataTooLargeError(
                    f"{tp.topic}-{tp.partition}: the metadata has {size} bytes, more than the broker accepts "
                    f"({limit}, offset_metadata_max_bytes)")
        return refused

    # ---- helpers ------------------------------------------------------------------------------------

    def _groups_of(self, group_id: str) -> dict[str, ConsumerGroup]:
        """The loaded groups of the group's partition; CoordinatorLoadInProgress while they load,
        NotCoordinator unless this broker leads it."""
        index = partition_for(group_id)
        groups = self._groups.get(index)
        if groups is None and index in self._loading:
            raise CoordinatorLoadInProgressError(f"broker {self._node_id} is loading the offsets of group {group_id!r}")
        if groups is None:
            raise NotCoordinatorError(f"broker {self._node_id} does not coordinate group {group_id!r}")
        return groups

    def _forget_if_empty(self, group: ConsumerGroup) -> None:
        if not group.members and not group.offsets:
            self._groups.get(partition_for(group.group_id), {}).pop(group.group_id, None)

    def _partition_counts(self) -> dict[str, int]:
        return {name: len(topic.partitions) for name, topic in self._state.topics.items()}


def _replayed(data: bytes, partition: int) -> list:
    """Every commit in ``data``, decoded (on a worker thread)."""
    return list(replay(data, partition))


def _check_group_id(group_id: str) -> None:
    if not group_id or len(group_id) > MAX_GROUP_ID_LENGTH:
        raise InvalidGroupIdError(f"group id must be 1..{MAX_GROUP_ID_LENGTH} characters, got {group_id!r}")


def _committed_by_topic(wanted: list[TopicPartition], offsets: dict[TopicPartition, CommittedOffset]
                        ) -> list[protocol.TopicCommittedOffsets]:
    topics: dict[str, list[protocol.CommittedOffset]] = {}
    for tp in wanted:
        found = offsets.get(tp)
        topics.setdefault(tp.topic, []).append(
            protocol.CommittedOffset(tp.partition, found.offset if found else -1, found.metadata if found else ""))
    return [protocol.TopicCommittedOffsets(topic, parts) for topic, parts in topics.items()]


def _partition_lag(reading: PartitionLagReading) -> protocol.GroupPartitionLag:
    committed = -1 if reading.committed_offset is None else reading.committed_offset
    return protocol.GroupPartitionLag(reading.partition.topic, reading.partition.partition, committed,
                                      reading.log_end_offset, reading.lag_seconds, reading.owner_member_id or "",
                                      reading.owner_client_id or "")


def _commit_results(wanted, refused) -> list[protocol.TopicPartitionResults]:
    topics: dict[str, list[protocol.PartitionResult]] = {}
    for tp, _, _ in wanted:
        error = refused.get(tp)
        topics.setdefault(tp.topic, []).append(
            protocol.PartitionResult(tp.partition, error.code if error else 0, str(error) if error else ""))
    return [protocol.TopicPartitionResults(topic, parts) for topic, parts in topics.items()]
