"""The controller: turns metadata requests into replicated Raft commands.

Only the broker that is the Raft leader acts; elsewhere requests get
NotControllerError. Decisions (replica placement, topic ids) are made here
and then submitted as replicated calls, so a deposed leader's decisions never
commit (docs/architecture.md, 5.2). pysyncobj calls back on
its own thread; the callback hands the result to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from typing import Any, Callable, Iterable

from pysyncobj import FAIL_REASON, SyncObj
from rill.client import protocol
from rill.client.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    NotControllerError,
    RequestTimeoutError,
    RillError,
    StaleBrokerEpochError,
    TopicAlreadyExistsError,
    UnknownTopicError,
    error_for_code,
)
from rill.client.topic_names import colliding_name, topic_name_problem
from rill.node.metadata.liveness import BrokerLiveness
from rill.node.metadata.naming_policy import NamingPolicy
from rill.node.metadata.producer_ids import ProducerIdBlocks
from rill.node.metadata.state import (
    BrokerRegistration,
    IsrChange,
    MetadataState,
    RAFT_CODE_VERSION,
    PartitionState,
    TopicState,
    partitions_led_by,
)
from rill.node.metadata.topic_config import validate_topic_config
from rill.node.structured_logging import log_event

log = logging.getLogger(__name__)

MAX_PARTITIONS = 10_000


def check_topic_name(name: str, internal: bool) -> None:
    """InvalidTopicError unless ``name`` is legal (client/topic_names.py) and names an internal topic
    exactly when the brokers' internal path asks: clients neither create nor delete internal topics."""
    problem = topic_name_problem(name)
    if problem is not None:
        raise InvalidTopicError(problem)
    if name in protocol.INTERNAL_TOPICS and not internal:
        raise InvalidTopicError(f"{name} is an internal topic: only the brokers create and delete it")
    if internal and name not in protocol.INTERNAL_TOPICS:
        raise InvalidTopicError(f"{name!r} is not an internal topic")


def check_no_collision(name: str, existing: Iterable[str]) -> None:
    """InvalidTopicError if ``name`` collides with an existing topic or an internal one (Kafka's rule)."""
    other = colliding_name(name, [*existing, *protocol.INTERNAL_TOPICS])
    if other is not None:
        raise InvalidTopicError(f"topic {name!r} collides with existing topic {other!r} "
                                "('.' and '_' count as the same character)")


def place_replicas(brokers: list[int], partitions: int, replication_factor: int, start: int) -> list[tuple[int, ...]]:
    """Replica lists spread round-robin, so leaders (the first replica) spread evenly too."""
    ordered = sorted(brokers)
    count = len(ordered)
    return [
        tuple(ordered[(start + partition + replica) % count] for replica in range(replication_factor))
        for partition in range(partitions)
    ]


class Controller:
    """The cluster's decisions, made on the Raft leader only and committed as replicated commands.

    Fences brokers whose process is gone (``refused_since``: their port
    refuses connections) at once and brokers silent for ``session_timeout_ms``
    (liveness.py), moves leadership back to preferred replicas, and serves the
    brokers' and clients' metadata requests. Runs on the asyncio loop.

    A leader's ISR changes of many partitions (AlterPartition) commit as one
    Raft command, ``alter_isrs``, once this node's Raft runs code version
    RAFT_CODE_VERSION. The controller switches the cluster to it (pysyncobj's
    setCodeVersion, itself a replicated command) when it finds a lower
    version, and again when the batched command turns out unknown
    locally (a node that loaded a Raft snapshot forgets the newer commands
    until the next switch: pysyncobj resets them); but only once every
    registered broker's heartbeats report that it runs that version: a broker
    of an older version could not apply the switch and would stop applying
    metadata, so a rolling upgrade switches when its last broker is up. Until then each change is
    its own ``alter_isr`` command.
    """

    def __init__(self, raft: SyncObj, state: MetadataState, cluster_id: str, topic_defaults: dict[str, str],
                 session_timeout_ms: int, refused_since: Callable[[int], float | None],
                 auto_leader_rebalance: bool = True, timeout_s: float = 10.0,
                 naming_policy: NamingPolicy | None = None):
        self._raft = raft
        self._state = state
        self._cluster_id = cluster_id
        self._topic_defaults = topic_defaults
        self._liveness = BrokerLiveness(session_timeout_ms, refused_since)
        self._auto_leader_rebalance = auto_leader_rebalance
        self._naming_policy = naming_policy or NamingPolicy("")
        self._timeout_s = timeout_s
        self._term = -1  # the Raft term in which this broker last took over as controller
        self._fencing: set[int] = set()
        self._electing = False
        self._settled: tuple[dict, dict] | None = None  # (topics, brokers) in which no preferred leader waited
        self._creating = asyncio.Lock()
        self._switching_version = False
        self._code_versions: dict[int, int] = {}  # node id -> the Raft code version its heartbeats report
        self._producer_ids = ProducerIdBlocks(lambda: self._submit(self._state.allocate_producer_id_block))

    @property
    def active(self) -> bool:
        return self._raft._isLeader()

    async def _submit(self, command: Callable[..., Any], *args: Any) -> Any:
        """Run a replicated command on the leader and wait for its result."""
        if not self.active:
            raise NotControllerError("this broker is not the controller (Raft leader)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done(result: Any, error: int) -> None:
            loop.call_soon_threadsafe(_resolve, future, result, error)

        command(*args, callback=done)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeoutError("the metadata change did not commit in time") from None

    async def submit(self, command: Callable[..., Any], *args: Any) -> Any:
        """Run a replicated command of any consumer of this Raft (the schema registry's too) and wait for its
        result; NotControllerError unless this broker is the controller."""
        return await self._submit(command, *args)

    async def _submit_checked(self, command: Callable[..., Any], *args: Any) -> None:
        code = await self._submit(command, *args)
        if code:
            raise error_for_code(code)

    # ---- brokers ------------------------------------------------------------------------

    async def register_broker(self, request: protocol.BrokerRegistrationRequest) -> None:
        if request.cluster_id != self._cluster_id:
            raise InvalidConfigError(
                f"broker {request.node_id} belongs to cluster {request.cluster_id!r}, not {self._cluster_id!r}"
            )
        registration = BrokerRegistration(request.node_id, request.host, request.port, request.incarnation)
        before = self._state.topics
        await self._submit_checked(self._state.register_broker, registration)
        _log_isr_removals(before, self._state.topics, request.node_id, "new_incarnation")  # a quick restart
        self._liveness.registered(request.node_id, time.monotonic())

    def heartbeat(self, request: protocol.BrokerHeartbeatRequest) -> None:
        """Note a broker is alive; StaleBrokerEpochError tells it to register (again)."""
        if not self.active:
            raise NotControllerError("this broker is not the controller (Raft leader)")
        broker = self._state.brokers.get(request.node_id)
        if broker is None or broker.incarnation != request.incarnation or broker.fenced:
            raise StaleBrokerEpochError(f"broker {request.node_id} must register again")
        self._liveness.heard_from(request.node_id, time.monotonic())
        self._code_versions[request.node_id] = request.raft_code_version

    async def controlled_shutdown(self, request: protocol.ControlledShutdownRequest) -> int:
        """Fence a broker that is stopping, so its leaderships move first; returns what it still leads."""
        before = self._state.topics
        code = await self._submit(self._state.fence_broker, request.node_id, request.incarnation)
        if code and code != StaleBrokerEpochError.code:
            raise error_for_code(code)
        if not code:
            log_event(log, logging.INFO, "broker_fenced", f"broker {request.node_id} fenced for its controlled "
                      "shutdown", broker_id=request.node_id, incarnation=request.incarnation,
                      reason="controlled shutdown")
            _log_isr_removals(before, self._state.topics, request.node_id, "controlled_shutdown")
        return partitions_led_by(self._state.topics.values(), request.node_id)

    async def alter_isr(self, request: protocol.AlterIsrRequest) -> None:
        await self._submit_checked(self._state.alter_isr, request.topic, request.partition, request.node_id,
                                   request.leader_epoch, request.partition_epoch, tuple(request.isr))

    async def alter_partition(self, request: protocol.AlterPartitionRequest) -> protocol.AlterPartitionResponse:
        """Many ISR changes of one leader: one Raft command (or, before the cluster runs the code version that
        has it, one per change, submitted together); each partition's own error code."""
        changes = [(topic.topic, item.partition, item.leader_epoch, item.partition_epoch, tuple(item.isr))
                   for topic in request.topics for item in topic.partitions]
        try:
            codes = await self._submit(self._state.alter_isrs, request.node_id, tuple(changes))
        except KeyError:  # pysyncobj: the command is not enabled at this node's code version
            self._switch_code_version()
            codes = await asyncio.gather(*(self._alter_one(request.node_id, change) for change in changes))
        results = iter(codes)
        return protocol.AlterPartitionResponse(0, "", [
            protocol.AlterPartitionTopicResult(topic.topic, [_partition_result(item.partition, next(results))
                                                             for item in topic.partitions])
            for topic in request.topics])

    async def _alter_one(self, leader: int, change: IsrChange) -> int:
        name, partition, leader_epoch, partition_epoch, isr = change
        try:
            return await self._submit(self._state.alter_isr, name, partition, leader, leader_epoch, partition_epoch,
                                      isr)
        except RillError as error:
            return error.code

    def _switch_code_version(self) -> None:
        """Switch the cluster's Raft code version (see the class docstring), unless a switch is under way or a
        registered broker has not reported that it runs the version."""
        if not self._switching_version and all(self._code_versions.get(node_id, 0) >= RAFT_CODE_VERSION
                                               for node_id in self._state.brokers):
            self._switching_version = True
            asyncio.ensure_future(self._switch_to_batched_isr())

    async def _switch_to_batched_isr(self) -> None:
        try:
            await self._submit(self._raft.setCodeVersion, RAFT_CODE_VERSION)
        except RillError as error:
            log.warning("switching Raft to code version %d failed: %s", RAFT_CODE_VERSION, error)
        finally:
            self._switching_version = False

    async def elect_preferred_leaders(self) -> int:
        return await self._submit(self._state.elect_preferred_leaders)

    async def tick(self) -> None:
        """Periodic duties of the active controller: fence dead and silent brokers, restore preferred leaders."""
        if not self.active:
            return
        now = time.monotonic()
        brokers = self._state.brokers
        if self._raft.raftCurrentTerm != self._term:  # elected, even if it lost and won again between ticks
            self._term = self._raft.raftCurrentTerm
            self._liveness.take_over(brokers, now)
        if self._raft.getCodeVersion() < RAFT_CODE_VERSION:
            self._switch_code_version()
        live = [node_id for node_id, broker in brokers.items() if not broker.fenced and node_id not in self._fencing]
        for node_id, reason in self._liveness.to_fence(live, now).items():
            asyncio.ensure_future(self._fence(node_id, brokers[node_id].incarnation, reason))
        if self._auto_leader_rebalance and not self._electing and self._preferred_leader_waits():
            asyncio.ensure_future(self._rebalance())

    async def _fence(self, node_id: int, incarnation: int, reason: str) -> None:
        self._fencing.add(node_id)
        try:
            log_event(log, logging.WARNING, "broker_fenced", f"fencing broker {node_id}: {reason}",
                      broker_id=node_id, incarnation=incarnation, reason=reason)
            before = self._state.topics
            await self._submit(self._state.fence_broker, node_id, incarnation)
            _log_isr_removals(before, self._state.topics, node_id, "broker_fenced")
        except RillError as error:
            log_event(log, logging.WARNING, "broker_fence_failed", f"fencing broker {node_id} failed: {error}",
                      broker_id=node_id, reason=reason, error=str(error))
        finally:
            self._fencing.discard(node_id)

    def _preferred_leader_waits(self) -> bool:
        """Whether a partition's preferred replica is live and in sync but does not lead. The state is
        copy on write (state.py): unchanged dicts need no second look, so an idle cluster costs nothing."""
        topics, brokers = self._state.topics, self._state.brokers
        if self._settled is not None and self._settled[0] is topics and self._settled[1] is brokers:
            return False
        live = self._state.live_brokers()
        waits = any(
            state.leader != state.replicas[0] and state.replicas[0] in live and state.replicas[0] in state.isr
            for topic in topics.values() for state in topic.partitions
        )
        self._settled = None if waits else (topics, brokers)
        return waits

    async def _rebalance(self) -> None:
        self._electing = True
        try:
            moved = await self.elect_preferred_leaders()
            if moved:
                log.info("moved %d partition(s) back to their preferred leader", moved)
        except RillError as error:
            log.warning("preferred leader election failed: %s", error)
        finally:
            self._electing = False

    # ---- topics ---------------------------------------------------------------------------

    async def create_topic(self, name: str, partitions: int, replication_factor: int, config: dict[str, str],
                           internal: bool = False) -> None:
        """Create a topic; ``internal`` is the brokers' own path, the only one that creates internal topics.

        Creations are serialized, so that two colliding names asked for at
        once cannot both pass the collision check before either commits.
        """
        check_topic_name(name, internal)
        if not internal:
            self._naming_policy.check(name)
        async with self._creating:
            await self._create_topic(name, partitions, replication_factor, config, internal)

    async def _create_topic(self, name: str, partitions: int, replication_factor: int, config: dict[str, str],
                            internal: bool) -> None:
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(f"partitions must be 1..{MAX_PARTITIONS}, got {partitions}")
        live = sorted(self._state.live_brokers())
        if not 1 <= replication_factor <= len(live):
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} needs 1..{len(live)} (the live brokers)"
            )
        if name in self._state.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} exists already")
        if not internal:
            check_no_collision(name, self._state.topics)
        full_config = validate_topic_config(config, self._topic_defaults)
        start = zlib.crc32(name.encode()) % len(live)
        replica_lists = place_replicas(live, partitions, replication_factor, start)
        topic = TopicState(
            name=name,
            topic_id=uuid.uuid4().hex,
            config=full_config,
            partitions=tuple(PartitionState(replicas, replicas[0], 0, replicas) for replicas in replica_lists),
        )
        code = await self._submit(self._state.create_topic, topic)
        if code:
            raise error_for_code(code, f"topic {name!r} exists already")

    async def delete_topic(self, name: str) -> None:
        """Delete a topic; internal topics are refused (a deleted ``__consumer_offsets`` would drop every
        committed offset)."""
        if name in protocol.INTERNAL_TOPICS:
            raise InvalidTopicError(f"{name} is an internal topic: only the brokers create and delete it")
        topic = self._state.topics.get(name)
        if topic is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        code = await self._submit(self._state.delete_topic, name, topic.topic_id)
        if code:
            raise error_for_code(code, f"topic {name!r} does not exist")

    # ---- producer ids -----------------------------------------------------------------------

    async def init_producer_id(self) -> int:
        """A producer id never handed out before, for an idempotent producer (its epoch starts at 0).

        Only the controller hands them out (NotControllerError elsewhere),
        from a block it took through Raft (producer_ids.py).
        """
        if not self.active:
            raise NotControllerError("this broker is not the controller (Raft leader)")
        return await self._producer_ids.next_id()


def _log_isr_removals(before: dict[str, TopicState], after: dict[str, TopicState], node_id: int,
                      cause: str) -> None:
    """An isr_change event for each partition whose ISR lost ``node_id`` between the two states, as the
    controller's commands (fencing, a new incarnation) do without an AlterIsr of the leader."""
    if before is after:  # copy on write (state.py): the same dict, so no topic changed
        return
    for name, topic in after.items():
        old = before.get(name)
        if old is None or old.topic_id != topic.topic_id:
            continue
        for index, (was, state) in enumerate(zip(old.partitions, topic.partitions)):
            if node_id in was.isr and node_id not in state.isr:
                log_event(log, logging.INFO, "isr_change", f"{name}-{index}: ISR {list(was.isr)} -> "
                          f"{list(state.isr)}, without broker {node_id} ({cause})", topic=name, partition=index,
                          old_isr=list(was.isr), new_isr=list(state.isr), leader=state.leader,
                          leader_epoch=state.leader_epoch, source=cause, broker_id=node_id)


def _partition_result(partition: int, code: int) -> protocol.AlterPartitionResult:
    return protocol.AlterPartitionResult(partition, code, str(error_for_code(code)) if code else "")


def _resolve(future: asyncio.Future, result: Any, error: int) -> None:
    if future.done():
        return
    if error == FAIL_REASON.SUCCESS:
        future.set_result(result)
    else:
        future.set_exception(NotControllerError(f"the metadata change failed in Raft (reason {error})"))
