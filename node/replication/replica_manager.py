"""The data plane of a broker: produce, fetch (consumers' and followers'), list offsets, ISR upkeep.

Holds the partitions this broker hosts, created, dropped and switched
between leader and follower to follow the metadata. Waiting is done with
futures on the asyncio loop, never sleeping threads:

- a fetch that finds fewer than ``min_bytes`` parks until an append or a
  high-watermark move on one of its partitions, or ``max_wait_ms``;
- an ``acks=all`` produce parks until the high watermark passes its last
  record (followers fetched it), the request's timeout, or a leader change.

``ReplicaLimits`` bounds what a client controls here: waits are capped
(``max_fetch_wait_ms``, ``max_produce_timeout_ms``), a fetch reads at most
``fetch_max_bytes``, and a partition holds at most
``max_pending_acks_per_partition`` unconfirmed acks=all writes (more are
refused before they are appended, with ThrottlingQuotaExceededError).

Not thread-safe: runs on the asyncio loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Awaitable, Callable

from rill.client import protocol
from rill.client.errors import (
    InvalidConfigError,
    InvalidRequestError,
    InvalidTopicError,
    NotLeaderError,
    OffsetNotAvailableError,
    RequestTimeoutError,
    RillError,
    StorageError,
    ThrottlingQuotaExceededError,
    UnknownTopicError,
)
from rill.node.bounded_wait import timed_out, wait_at_most
from rill.node.broker_stats import BrokerStats
from rill.node.log.config import LogConfig
from rill.node.log.log import Log
from rill.node.log.manager import LogManager
from rill.node.metadata.state import PartitionState, TopicState
from rill.node.metadata.topic_config import topic_settings
from rill.node.replication.fetch_session import FetchSessionCache
from rill.node.replication.fetch_session_server import SessionFetchServer
from rill.node.replication.partition import Partition
from rill.node.structured_logging import log_event

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]
VALID_ACKS = (0, 1, -1)
RoleListener = Callable[[Partition, str], None]
PARTITION_METADATA_FILE = "partition.metadata"  # the id of the topic a partition folder belongs to


@dataclass(frozen=True)
class ReplicaLimits:
    """Caps on what produce and fetch requests ask for (NodeConfig has each one's meaning)."""

    max_fetch_wait_ms: int
    max_produce_timeout_ms: int
    max_pending_acks_per_partition: int
    fetch_max_bytes: int


class _PendingAck:
    """An acks=all produce waiting for the high watermark to pass ``required_offset``."""

    __slots__ = ("required_offset", "leader_epoch", "future")

    def __init__(self, required_offset: int, leader_epoch: int, future: asyncio.Future):
        self.required_offset = required_offset
        self.leader_epoch = leader_epoch
        self.future = future


class ReplicaManager:
    """The partitions of this broker and the requests that read and write them."""

    def __init__(self, node_id: int, log_manager: LogManager, on_role_change: RoleListener,
                 follower_timeout_ms: int, limits: ReplicaLimits, stats: BrokerStats | None = None):
        self._limits = limits
        self._stats = stats if stats is not None else BrokerStats()  # records in and out, ISR changes: /metrics
        self.node_id = node_id
        self._follower_timeout_s = follower_timeout_ms / 1000
        self.log_manager = log_manager
        self.partitions: dict[PartitionKey, Partition] = {}
        self._on_role_change = _logging_leader_changes(on_role_change)
        self._consumer_waiters: dict[PartitionKey, set[asyncio.Future]] = defaultdict(set)  # consumers' long polls
        self._follower_waiters: dict[PartitionKey, set[asyncio.Future]] = defaultdict(set)  # sessionless followers'
        self._pending_acks: dict[PartitionKey, list[_PendingAck]] = defaultdict(list)
        # Followers' fetch sessions (fetch_session.py): touched by the same appends and moves as the waiters.
        self.fetch_sessions = SessionFetchServer(FetchSessionCache(), self.partitions, self._read_partition,
                                                 limits.max_fetch_wait_ms, limits.fetch_max_bytes)
        self.touched: set[PartitionKey] = set()  # partitions with appends or moves since IsrUpkeep last looked
        self._checked_topic_ids: dict[str, str] = {}  # topics whose local logs were checked for an older id
        # Topics whose stored config this broker cannot apply: the topic and why. Their partitions stay
        # offline here (their logs closed) while every other topic is served.
        self._offline: dict[str, tuple[TopicState, str]] = {}
        # Checks a client's records for a topic before they are appended, raising a RillError to refuse them
        # (schema enforcement, node/schema/enforcement.py); it returns at once for topics that check nothing.
        self.produce_check: Callable[[str, bytes], None] | None = None

    # ---- following the metadata ------------------------------------------

    def apply_topic(self, name: str, topic: TopicState | None) -> None:
        """Create, update or delete this broker's replicas of one topic to match the metadata.

        A topic whose stored config cannot be applied (stored before the
        controller validated configs as brokers apply them) is logged and
        kept offline: its partitions answer StorageError, the rest are served.
        """
        self._delete_offline_logs(name, None if topic is None else topic.topic_id)
        if topic is None:
            for key in [key for key in self.partitions if key[0] == name]:
                partition = self.partitions.pop(key)
                self._fail_pending(key, UnknownTopicError(f"topic {name!r} was deleted"))
                self._on_role_change(partition, "deleted")
                self._wake((key,))
            self.log_manager.delete_topic(name)
            self._stats.forget_topic(name)
            self._checked_topic_ids.pop(name, None)
            return
        self._drop_if_another_topic(name, topic.topic_id)
        try:
            settings = topic_settings(topic.config)
        except InvalidConfigError as error:
            if name not in self._offline:
                log.error("topic %s stays offline on this broker: %s", name, error)
            self._offline[name] = (topic, str(error))
            return
        for index, state in enumerate(topic.partitions):
            if self.node_id in state.replicas:
                self._apply_partition(name, index, state, settings.log, settings.min_insync_replicas,
                                      topic.topic_id)

    def _delete_offline_logs(self, name: str, topic_id: str | None) -> None:
        """Delete the closed logs of an offline topic once it is deleted or replaced by a new topic of its
        name (``topic_id``); they are opened only to be deleted, so their settings do not matter."""
        offline = self._offline.get(name)
        if offline is None or offline[0].topic_id == topic_id:
            return
        del self._offline[name]
        for index, state in enumerate(offline[0].partitions):
            if self.node_id in state.replicas:
                self.log_manager.get_or_create(name, index, LogConfig())
        self.log_manager.delete_topic(name)

    def _drop_if_another_topic(self, name: str, topic_id: str) -> None:
        """Delete local logs of an older topic of the same name (deleted and re-created while this
        broker was away): each partition folder records its topic's id (Kafka's partition.metadata).
        Checked once per topic id: the files are read only for a topic (or topic id) not seen before."""
        if self._checked_topic_ids.get(name) == topic_id:
            return
        self._checked_topic_ids[name] = topic_id
        stale = [index for topic, index in self.log_manager.partitions()
                 if topic == name and _recorded_topic_id(self.log_manager.get(topic, index)) not in (None, topic_id)]
        if not stale:
            return
        log.info("deleting the logs of an older topic named %s", name)
        for key in [key for key in self.partitions if key[0] == name]:
            self._on_role_change(self.partitions.pop(key), "deleted")
            self._fail_pending(key, UnknownTopicError(f"topic {name!r} was re-created"))
        self.log_manager.delete_topic(name)

    def _apply_partition(self, name: str, index: int, state: PartitionState, storage, min_insync: int,
                         topic_id: str) -> None:
        key = (name, index)
        partition = self.partitions.get(key)
        if partition is not None and partition.offline:
            partition.update_state(state, min_insync)  # kept current for status; it serves nothing
            return
        if partition is None:
            log_ = self.log_manager.get_or_create(name, index, storage)
            _record_topic_id(log_, topic_id)
            partition = self.partitions[key] = Partition(name, topic_id, index, self.node_id, log_, state,
                                                         min_insync, self._follower_timeout_s)
            self._on_role_change(partition, "leader" if partition.is_leader else "follower")
            return
        if state is partition.state and min_insync == partition.min_insync_replicas:
            return  # another partition of the topic changed (the metadata is copy on write): nothing to do
        before = partition.state
        role = partition.update_state(state, min_insync)
        self._stats.isr_changed(self.node_id, before, partition.state)
        if role is not None:
            self._fail_pending(key, NotLeaderError(f"leadership of {partition.name} moved"))
            self._wake((key,))
            self._on_role_change(partition, role)
        else:
            self.high_watermark_moved(key, partition)

    def _partition(self, topic: str, index: int) -> Partition:
        partition = self.partitions.get((topic, index))
        if partition is None and topic in self._offline:
            raise StorageError(f"{topic}-{index} is offline on broker {self.node_id}: {self._offline[topic][1]}")
        if partition is None:
            raise UnknownTopicError(f"unknown topic or partition {topic}-{index} on broker {self.node_id}")
        return partition

    # ---- produce ------------------------------------------------------------

    def produce(self, request: protocol.ProduceRequest, internal: bool = False
                ) -> protocol.ProduceResponse | None | Awaitable:
        """Append every partition's batches; for acks=all, answer once followers have them.

        Only the broker itself (``internal``) writes to internal topics (``__consumer_offsets``); a client
        gets InvalidTopicError for them, as in Kafka.
        """
        if request.acks not in VALID_ACKS:
            raise InvalidRequestError(f"acks must be 0, 1 or -1 (all), got {request.acks}")
        results: list[tuple[str, protocol.PartitionProduceResponse, asyncio.Future | None]] = []
        appended: list[PartitionKey] = []
        committed: list[PartitionKey] = []  # appended, and the high watermark moved (no follower to wait for)
        for topic_data in request.topics:
            for data in topic_data.partitions:
                results.append(self._produce_partition(topic_data.topic, data, request.acks, appended, committed,
                                                       internal))
        self._wake_followers(appended)
        for key in committed:
            self.high_watermark_moved(key, self.partitions[key])
        if request.acks == 0:
            return None
        waiting = [future for _, _, future in results if future is not None]
        if not waiting:
            return _produce_response(results)
        return self._await_acks(results, waiting, min(max(request.timeout_ms, 1), self._limits.max_produce_timeout_ms))

    def _produce_partition(self, topic: str, data: protocol.PartitionProduceData, acks: int,
                           appended: list[PartitionKey], committed: list[PartitionKey], internal: bool):
        try:
            if topic in protocol.INTERNAL_TOPICS and not internal:
                raise InvalidTopicError(f"{topic} is an internal topic: only the brokers write to it")
            partition = self._partition(topic, data.partition)
            if self.produce_check is not None and not internal:
                self.produce_check(topic, data.records)
            if acks == -1:
                self._check_pending_acks((topic, data.partition))
            high_watermark = partition.high_watermark
            info = partition.append_as_leader(data.records, acks)
        except RillError as error:
            self._note_storage_error(topic, data.partition, error)
            return topic, protocol.PartitionProduceResponse(data.partition, error.code, str(error), -1, -1), None
        key = (topic, data.partition)
        appended.append(key)
        if partition.high_watermark != high_watermark:
            committed.append(key)
        if not internal:
            self._stats.produced(topic, info)
        response = protocol.PartitionProduceResponse(data.partition, 0, "", info.first_offset,
                                                     partition.log.log_start_offset)
        future = None
        if acks == -1 and partition.high_watermark <= info.last_offset:
            future = asyncio.get_running_loop().create_future()
            self._pending_acks[key].append(_PendingAck(info.last_offset + 1, partition.state.leader_epoch, future))
        return topic, response, future

    def _check_pending_acks(self, key: PartitionKey) -> None:
        """Refuse another acks=all write to a partition that has as many unconfirmed ones as allowed."""
        pending = len(self._pending_acks.get(key, ()))
        if pending >= self._limits.max_pending_acks_per_partition:
            raise ThrottlingQuotaExceededError(
                f"{key[0]}-{key[1]} has {pending} acks=all writes waiting for the in-sync replicas, the most "
                f"the broker allows (max_pending_acks_per_partition); nothing was written, retry later")

    async def _await_acks(self, results, waiting: list[asyncio.Future], timeout_ms: int) -> protocol.ProduceResponse:
        deadline = time.monotonic() + timeout_ms / 1000
        for future in waiting:
            await wait_at_most(future, deadline - time.monotonic())
        final = []
        expired: set[PartitionKey] = set()
        for topic, response, future in results:
            if future is not None:
                if timed_out(future):
                    error = RequestTimeoutError(
                        f"{topic}-{response.partition}: in-sync replicas did not confirm within {timeout_ms} ms")
                    expired.add((topic, response.partition))
                else:
                    error = future.exception()
                if error is not None:
                    response = protocol.PartitionProduceResponse(response.partition, error.code, str(error), -1, -1)
            final.append((topic, response, None))
        for key in expired:
            self._forget_answered_acks(key)
        return _produce_response(final)

    def _forget_answered_acks(self, key: PartitionKey) -> None:
        """Drop the timed-out acks of a partition whose high watermark is stuck, so they stop counting."""
        pending = self._pending_acks.get(key)
        if pending is None:
            return
        live = [ack for ack in pending if not ack.future.done()]
        if live:
            self._pending_acks[key] = live
        else:
            del self._pending_acks[key]

    def _complete_acks(self, key: PartitionKey, partition: Partition) -> None:
        pending = self._pending_acks.get(key)
        if not pending:
            return
        still = []
        for ack in pending:
            if ack.future.done():
                continue
            if ack.required_offset <= partition.high_watermark:
                ack.future.set_result(None)
            else:
                still.append(ack)
        if still:
            self._pending_acks[key] = still
        else:
            del self._pending_acks[key]

    def _fail_pending(self, key: PartitionKey, error: RillError) -> None:
        for ack in self._pending_acks.pop(key, ()):
            if not ack.future.done():
                ack.future.set_exception(error)

    # ---- fetch ----------------------------------------------------------------

    def fetch(self, request: protocol.FetchRequest) -> protocol.FetchResponse | Awaitable[protocol.FetchResponse]:
        """Read now; if fewer than min_bytes are there, wait for appends up to max_wait_ms.

        A follower's fetch in a fetch session is served by ``fetch_sessions`` (fetch_session_server.py).
        The waiter is registered here, before returning: the long poll's task starts on a later turn of
        the loop, and an append or high-watermark move in between must still wake it.
        """
        if request.replica_id >= 0 and request.session_epoch != protocol.FULL_FETCH_EPOCH:
            return self.fetch_sessions.fetch(request)
        response, size = self._read(request)
        if size >= max(request.min_bytes, 1) or request.max_wait_ms <= 0 or _has_error(response):
            return self._answered(request, response)
        wait_s = min(request.max_wait_ms, self._limits.max_fetch_wait_ms) / 1000
        keys = [(t.topic, p.partition) for t in request.topics for p in t.partitions]
        waiters = self._follower_waiters if request.replica_id >= 0 else self._consumer_waiters
        return self._long_poll(request, keys, waiters, _watch(waiters, keys), time.monotonic() + wait_s)

    def _answered(self, request: protocol.FetchRequest, response: protocol.FetchResponse) -> protocol.FetchResponse:
        """A fetch's final answer; a consumer's is counted in the stats (records and bytes out per topic)."""
        if request.replica_id < 0:
            self._stats.fetched(request, response)
        return response

    async def _long_poll(self, request: protocol.FetchRequest, keys: list[PartitionKey],
                         waiters: dict[PartitionKey, set[asyncio.Future]], woken: asyncio.Future,
                         deadline: float) -> protocol.FetchResponse:
        """Wait on ``woken`` (already in ``waiters`` for ``keys``), re-read when woken, until enough data or
        ``deadline``."""
        while True:
            try:
                woke = await wait_at_most(woken, deadline - time.monotonic())
            finally:
                _forget_waiter(waiters, keys, woken)
            if not woke:
                break
            response, size = self._read(request)
            if size >= request.min_bytes or _has_error(response):
                return self._answered(request, response)
            woken = _watch(waiters, keys)
        return self._answered(request, self._read(request)[0])

    def _wake(self, keys) -> None:
        """Wake every fetch parked on ``keys`` (a role change, a deleted topic, a replica gone offline)."""
        self._wake_followers(keys)
        self._wake_consumers(keys)

    def _wake_followers(self, keys) -> None:
        """New records on ``keys`` (or a role change): follower fetches, in a session or not, read them."""
        self.fetch_sessions.cache.touched(keys)
        self.touched.update(keys)
        _resolve(self._follower_waiters, keys)

    def _wake_consumers(self, keys) -> None:
        """Records on ``keys`` became visible to consumers (the high watermark moved), or a role changed."""
        self.touched.update(keys)
        _resolve(self._consumer_waiters, keys)

    def _read(self, request: protocol.FetchRequest) -> tuple[protocol.FetchResponse, int]:
        budget = max(min(request.max_bytes, self._limits.fetch_max_bytes), 1)
        total = 0
        topics = []
        for topic_fetch in request.topics:
            results = []
            for wanted in topic_fetch.partitions:
                limit = max(1, min(wanted.partition_max_bytes, budget - total)) if total < budget else 0
                result = self._read_partition(topic_fetch.topic, topic_fetch.topic_id, wanted, limit,
                                              request.replica_id)
                total += len(result.records)
                results.append(result)
            topics.append(protocol.TopicFetchResponse(topic_fetch.topic, results))
        return protocol.FetchResponse(topics), total

    def _read_partition(self, topic: str, topic_id: str, wanted: protocol.PartitionFetch, max_bytes: int,
                        replica_id: int) -> protocol.PartitionFetchResponse:
        try:
            partition = self._partition(topic, wanted.partition)
            partition.check_topic_id(topic_id)
            if replica_id < 0:
                records = partition.read_for_consumer(wanted.fetch_offset, max_bytes, wanted.current_leader_epoch)
            else:
                records, moved = partition.read_for_follower(replica_id, wanted.fetch_offset, max_bytes,
                                                             wanted.current_leader_epoch)
                if moved:
                    self.high_watermark_moved((topic, wanted.partition), partition)
        except RillError as error:
            self._note_storage_error(topic, wanted.partition, error)
            known = self.partitions.get((topic, wanted.partition))
            start = known.log.log_start_offset if known is not None else -1
            return protocol.PartitionFetchResponse(wanted.partition, error.code, str(error), -1, start, b"")
        return protocol.PartitionFetchResponse(
            wanted.partition, 0, "", partition.high_watermark, partition.log.log_start_offset, records
        )

    def high_watermark_moved(self, key: PartitionKey, partition: Partition) -> None:
        """Release acks=all produces and consumer fetches waiting on this partition.

        Followers' sessions only mark it for their next answer: a parked follower fetch waits for records,
        and is not woken to re-read for the move alone (as Kafka's delayed follower fetch is not).
        """
        self._complete_acks(key, partition)
        self.fetch_sessions.cache.touched((key,), wake=False)
        self._wake_consumers((key,))

    # ---- list offsets and leader epochs -----------------------------------------

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
                if not partition.high_watermark_known:
                    raise OffsetNotAvailableError(f"{partition.name}: the new leader's high watermark is catching up")
                return protocol.PartitionOffsetResponse(wanted.partition, 0, "", partition.high_watermark, -1)
            if wanted.timestamp == protocol.EARLIEST_TIMESTAMP:
                return protocol.PartitionOffsetResponse(wanted.partition, 0, "", partition.log.log_start_offset, -1)
            if wanted.timestamp < 0:
                raise InvalidRequestError(f"timestamp {wanted.timestamp} is neither a time nor -1/-2")
            found = partition.log.offset_for_timestamp(wanted.timestamp)
        except RillError as error:
            self._note_storage_error(topic, wanted.partition, error)
            return protocol.PartitionOffsetResponse(wanted.partition, error.code, str(error), -1, -1)
        if found is None or found[0] >= partition.high_watermark:
            return protocol.PartitionOffsetResponse(wanted.partition, 0, "", -1, -1)
        return protocol.PartitionOffsetResponse(wanted.partition, 0, "", found[0], found[1])

    def offsets_for_leader_epoch(self, request: protocol.OffsetsForLeaderEpochRequest
                                 ) -> protocol.OffsetsForLeaderEpochResponse:
        """Where each asked epoch ends in the leader's log, so a follower can cut what diverged (KIP-101)."""
        topics = []
        for topic_request in request.topics:
            results = []
            for wanted in topic_request.partitions:
                try:
                    partition = self._partition(topic_request.topic, wanted.partition)
                    partition.check_topic_id(topic_request.topic_id)
                    partition.ensure_leader()
                    epoch, end = partition.log.end_offset_for_epoch(wanted.leader_epoch)
                    results.append(protocol.PartitionEpochResponse(wanted.partition, 0, "", epoch, end))
                except RillError as error:
                    results.append(protocol.PartitionEpochResponse(wanted.partition, error.code, str(error), -1, -1))
            topics.append(protocol.TopicEpochResponse(topic_request.topic, results))
        return protocol.OffsetsForLeaderEpochResponse(topics)

    # ---- status -----------------------------------------------------------------

    def leader_partitions(self) -> list[Partition]:
        """The partitions this broker leads and serves (not those offline here)."""
        return [partition for partition in self.partitions.values() if partition.is_leader and not partition.offline]

    def offline_partitions(self) -> list[str]:
        """``<topic>-<partition>`` of every replica here that serves nothing: taken offline by a disk error,
        or of a topic whose config this broker cannot apply."""
        names = [partition.name for partition in self.partitions.values() if partition.offline]
        names += [f"{name}-{index}" for name, (topic, _) in self._offline.items()
                  for index, state in enumerate(topic.partitions) if self.node_id in state.replicas]
        return sorted(names)

    def parked_fetches(self) -> int:
        """Long-poll fetches waiting for data now, each once however many partitions it waits on."""
        parked = set().union(*self._consumer_waiters.values(), *self._follower_waiters.values())
        return len(parked) + self.fetch_sessions.parked

    def pending_acks(self) -> int:
        """acks=all appends waiting now for the in-sync replicas to confirm them."""
        return sum(1 for acks in self._pending_acks.values() for ack in acks if not ack.future.done())

    # ---- disk errors -------------------------------------------------------------

    def _note_storage_error(self, topic: str, index: int, error: RillError) -> None:
        if isinstance(error, StorageError):
            self.storage_failed(topic, index, error)

    def storage_failed(self, topic: str, index: int, error: StorageError) -> None:
        """A disk error in this broker's replica of (topic, index): take it offline here, as Kafka does with
        a failed log directory, until the broker restarts.

        The replica stops serving (produce, fetch and offsets get StorageError,
        which clients retry at the new leader) and fetching; acks=all writes
        waiting on it fail; its log gets no more appends or maintenance and no
        clean-shutdown marker, so the next start recovers it. The role
        listener hears "offline": the node asks the controller to move the
        leadership away. A second error of the same replica changes nothing.
        """
        key = (topic, index)
        partition = self.partitions.get(key)
        if partition is None or partition.offline:
            return
        log_event(log, logging.ERROR, "storage_error",
                  f"{partition.name}: disk error, the replica goes offline on this broker until it restarts: {error}",
                  topic=topic, partition=index, error=str(error), action="replica_offline")
        partition.go_offline(str(error))
        self.log_manager.take_offline(topic, index)
        self._fail_pending(key, StorageError(f"{partition.name} went offline on broker {self.node_id}"))
        self._wake((key,))
        self._on_role_change(partition, "offline")


def _logging_leader_changes(listener: RoleListener) -> RoleListener:
    """``listener``, after logging each new role at a new leader epoch (leader or follower) as a
    leader_change event: every role change of a replica passes through the listener."""
    def role_changed(partition: Partition, role: str) -> None:
        if role in ("leader", "follower"):
            state = partition.state
            log_event(log, logging.INFO, "leader_change",
                      f"{partition.name}: {_new_role_text(role, state.leader)} at leader epoch {state.leader_epoch}",
                      topic=partition.topic, partition=partition.index, role=role, leader=state.leader,
                      leader_epoch=state.leader_epoch, isr=list(state.isr), replicas=list(state.replicas))
        listener(partition, role)

    return role_changed


def _new_role_text(role: str, leader: int) -> str:
    if role == "leader":
        return "became leader"
    return f"became follower of broker {leader}" if leader >= 0 else "has no leader (offline)"


def _recorded_topic_id(log_: Log | None) -> str | None:
    if log_ is None:
        return None
    try:
        return (log_.directory / PARTITION_METADATA_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _record_topic_id(log_: Log, topic_id: str) -> None:
    path = log_.directory / PARTITION_METADATA_FILE
    if not path.exists():
        path.write_text(topic_id + "\n")


def _produce_response(results) -> protocol.ProduceResponse:
    by_topic: dict[str, list[protocol.PartitionProduceResponse]] = defaultdict(list)
    for topic, response, _ in results:
        by_topic[topic].append(response)
    return protocol.ProduceResponse([protocol.TopicProduceResponse(t, parts) for t, parts in by_topic.items()])


def _has_error(response: protocol.FetchResponse) -> bool:
    return any(p.error_code for t in response.topics for p in t.partitions)


def _watch(waiters: dict[PartitionKey, set[asyncio.Future]], keys: list[PartitionKey]) -> asyncio.Future:
    """A future that the next wake of any of ``keys`` in ``waiters`` completes."""
    woken = asyncio.get_running_loop().create_future()
    for key in keys:
        waiters[key].add(woken)
    return woken


def _forget_waiter(waiters: dict[PartitionKey, set[asyncio.Future]], keys: list[PartitionKey],
                   woken: asyncio.Future) -> None:
    for key in keys:
        waiting = waiters.get(key)
        if waiting is not None:
            waiting.discard(woken)
            if not waiting:
                del waiters[key]


def _resolve(waiters: dict[PartitionKey, set[asyncio.Future]], keys) -> None:
    for key in keys:
        for waiter in waiters.get(key, ()):
            if not waiter.done():
                waiter.set_result(None)
