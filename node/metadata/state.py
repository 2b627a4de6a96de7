"""The cluster metadata, replicated by Raft (pysyncobj) on every broker.

Holds the registered brokers and every topic: its config and, per
partition, replicas, leader, leader epoch, ISR and partition epoch. Only
``@replicated`` methods change it, so every broker applies the same changes
in the same order; the journal and a full dump under the node's data dir
make it survive restarts (docs/architecture.md, 5.2).

Leader elections happen inside the commands, as pure functions of the
state, so that every broker computes the same result and a deposed
controller's decisions never commit. Rules (Kafka's):

- a leader is chosen from the ISR, among unfenced brokers, preferring the
  order of ``replicas``; with none, the partition goes offline (leader -1)
  unless ``unclean.leader.election.enable`` lets any live replica lead;
- every change of leader bumps ``leader_epoch``; every change at all bumps
  ``partition_epoch``;
- the ISR never becomes empty: the last member stays in it even when fenced,
  so it can lead again without loss when it returns.

Thread-safety: pysyncobj applies commands on its own thread. Each command
replaces the dicts it changes with new ones (copy on write) and values are
immutable, so the asyncio thread may read ``topics`` and ``brokers`` at any
time without a lock. Every command is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from pysyncobj import SyncObjConf, SyncObjConsumer, replicated
from rill.client.errors import (
    FencedLeaderEpochError,
    InvalidRequestError,
    StaleBrokerEpochError,
    TopicAlreadyExistsError,
    UnknownTopicError,
)

PRODUCER_ID_BLOCK_SIZE = 1000  # producer ids a controller takes at once (Kafka's block size)
# The newest command version of MetadataState (``@replicated(ver=...)``): pysyncobj numbers commands by
# (version, consumer, name), so a newer command gets an id after every older one and old journals replay.
# Brokers report it in their heartbeats; the controller switches the cluster to it once all of them run it.
RAFT_CODE_VERSION = 1
# One ISR change in MetadataState.alter_isrs: topic, partition, leader epoch, partition epoch, ISR. Plain tuples:
# the Raft journal pickles them, and a tuple unpickles whatever becomes of this module.
IsrChange = tuple[str, int, int, int, tuple[int, ...]]


@dataclass(frozen=True)
class BrokerRegistration:
    node_id: int
    host: str
    port: int
    incarnation: int
    fenced: bool = False


@dataclass(frozen=True)
class PartitionState:
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    partition_epoch: int = 0


@dataclass(frozen=True)
class TopicState:
    name: str
    topic_id: str
    config: dict[str, str]
    partitions: tuple[PartitionState, ...]

    @property
    def unclean_election(self) -> bool:
        return self.config.get("unclean.leader.election.enable", "false") == "true"


def raft_conf(data_dir: Path, password: str, on_state_changed: Callable[[], None] | None = None) -> SyncObjConf:
    """pysyncobj settings: persisted journal and dump, batching off, heartbeats and elections, a password.

    With batching off a submitted command wakes the Raft thread and is sent at
    once, so commands never wait for a tick (raft_ticks.py: the thread sleeps
    until its next heartbeat or election deadline, at most autoTickPeriod).
    The leader heartbeats every 50 ms, four times within the shortest
    election timeout (0.2-0.4 s); each heartbeat wakes every broker, so they
    are what an idle cluster's Raft costs. The election timeouts and
    leaderFallbackTimeout (0.5 s, not the default 30 s) keep a controller
    failover well under a second. They are shorter than the stalls a broker
    rides out (2 s): a stopped controller is replaced, and a broker that
    resumes from a stall longer than the election timeout usually calls an
    election itself and wins it (pysyncobj has no pre-vote). Either way no
    partition moves, since a new controller gives every broker a full session
    timeout (liveness.py).

    ``password`` (from the cluster secret) makes pysyncobj encrypt and
    authenticate every message (Fernet: AES-CBC and HMAC-SHA256): it checks
    a frame's HMAC before it unpickles anything, and drops the connection
    of a peer whose frame fails the check. Without one, it unpickles
    whatever reaches the Raft port, which runs the sender's code.

    ``on_state_changed`` is called on pysyncobj's thread whenever this node
    becomes leader, follower or candidate.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    return SyncObjConf(
        password=password,
        journalFile=str(data_dir / "raft.journal"),
        fullDumpFile=str(data_dir / "raft.dump"),
        appendEntriesUseBatch=False,
        appendEntriesPeriod=0.05,
        raftMinTimeout=0.2,
        raftMaxTimeout=0.4,
        leaderFallbackTimeout=0.5,
        connectionTimeout=1.0,
        connectionRetryTime=0.5,
        autoTickPeriod=0.1,
        commandsWaitLeader=True,
        dynamicMembershipChange=False,
        onStateChanged=None if on_state_changed is None else lambda old, new: on_state_changed(),
    )


def elect(state: PartitionState, live: set[int], unclean: bool) -> PartitionState:
    """The partition with a leader chosen by Kafka's rules; the same state if nothing changes."""
    if state.leader in live and state.leader in state.isr:
        return state
    candidates = [replica for replica in state.replicas if replica in state.isr and replica in live]
    isr = state.isr
    if not candidates and unclean:
        candidates = [replica for replica in state.replicas if replica in live]
        isr = tuple(candidates[:1])
    leader = candidates[0] if candidates else -1
    if leader == state.leader:
        return state
    return replace(state, leader=leader, leader_epoch=state.leader_epoch + 1, isr=isr,
                   partition_epoch=state.partition_epoch + 1)


def without_broker(state: PartitionState, node_id: int, live: set[int], unclean: bool) -> PartitionState:
    """The partition once ``node_id`` is gone: out of the ISR (unless last), leadership moved."""
    isr = state.isr
    if node_id in isr and len(isr) > 1:
        isr = tuple(replica for replica in isr if replica != node_id)
    changed = state if isr == state.isr else replace(state, isr=isr, partition_epoch=state.partition_epoch + 1)
    return elect(changed, live - {node_id}, unclean)


class MetadataState(SyncObjConsumer):
    """Brokers and topics, changed only through replicated, idempotent commands.

    A pysyncobj consumer: attributes set before ``super().__init__`` (the
    change callback) are not part of the replicated state; those set after are
    pickled into the Raft dump.

    ``next_producer_id`` is the first producer id no controller has taken
    yet: controllers take blocks of PRODUCER_ID_BLOCK_SIZE ids with
    ``allocate_producer_id_block``, so no id is handed out twice. (A class
    attribute as well, for a Raft dump written before it existed.)
    """

    next_producer_id: int = 0

    def __init__(self, on_change: Callable[[str], None]):
        self._on_change = on_change
        super().__init__()
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[str, TopicState] = {}
        self.next_producer_id = 0

    def _deserialize(self, data: dict) -> None:
        """A Raft snapshot replaced the state at once: announce every topic it changed."""
        topics_before = self.topics
        super()._deserialize(data)
        for name in set(topics_before) | set(self.topics):
            if topics_before.get(name) != self.topics.get(name):
                self._on_change(f"topic:{name}")
        self._on_change("brokers")

    # ---- reading -------------------------------------------------------------------

    def live_brokers(self) -> set[int]:
        return {node_id for node_id, broker in self.brokers.items() if not broker.fenced}

    # ---- brokers ---------------------------------------------------------------------

    @replicated
    def register_broker(self, registration: BrokerRegistration) -> int:
        """A broker (re)starts: a new incarnation first loses its old roles, then may lead again."""
        current = self.brokers.get(registration.node_id)
        if current is not None and current.incarnation > registration.incarnation:
            return StaleBrokerEpochError.code
        if current is not None and current.incarnation == registration.incarnation and not current.fenced:
            return 0
        if current is not None and not current.fenced:
            self._remove_broker(registration.node_id)
        self.brokers = {**self.brokers, registration.node_id: replace(registration, fenced=False)}
        self._elect_everywhere()
        self._on_change("brokers")
        return 0

    @replicated
    def fence_broker(self, node_id: int, incarnation: int) -> int:
        """A broker stopped heartbeating or shut down: move its leaderships, drop it from ISRs."""
        current = self.brokers.get(node_id)
        if current is None or current.incarnation != incarnation:
            return StaleBrokerEpochError.code
        if current.fenced:
            return 0
        self.brokers = {**self.brokers, node_id: replace(current, fenced=True)}
        self._remove_broker(node_id)
        self._on_change("brokers")
        return 0

    def _remove_broker(self, node_id: int) -> None:
        live = self.live_brokers()
        self._change_partitions(
            lambda topic, state: without_broker(state, node_id, live, topic.unclean_election)
            if node_id in state.replicas else state
        )

    def _elect_everywhere(self) -> None:
        live = self.live_brokers()
        self._change_partitions(lambda topic, state: elect(state, live, topic.unclean_election))

    def _change_partitions(self, change: Callable[[TopicState, PartitionState], PartitionState]) -> None:
        """Apply ``change`` to every partition; replace only the topics that changed."""
        topics = dict(self.topics)
        changed = []
        for name, topic in self.topics.items():
            partitions = tuple(change(topic, state) for state in topic.partitions)
            if partitions != topic.partitions:
                topics[name] = replace(topic, partitions=partitions)
                changed.append(name)
        self.topics = topics  # before the events: their handlers may read the state at once
        for name in changed:
            self._on_change(f"topic:{name}")

    # ---- partitions ------------------------------------------------------------------

    @replicated
    def alter_isr(self, name: str, partition: int, leader: int, leader_epoch: int, partition_epoch: int,
                  isr: tuple[int, ...]) -> int:
        """The leader's ISR change, if it still leads at that epoch and nobody changed it since.

        An ISR without the leader is a leader that can no longer store the
        partition (a disk error) stepping down: another member of the new
        ISR, which must not be empty, is elected at once.
        """
        topic = self.topics.get(name)
        state = _partition_of(topic, partition)
        code, changed = isr_change(state, leader, leader_epoch, partition_epoch, isr, self.live_brokers())
        if changed is not None:
            self._set_partition(topic, partition, changed)
        return code

    @replicated(ver=RAFT_CODE_VERSION)
    def alter_isrs(self, leader: int, changes: tuple[IsrChange, ...]) -> list[int]:
        """Many ISR changes of one leader in one command, each applied as :meth:`alter_isr` would (in order,
        each on the state the earlier ones left); one error code per change. Each changed topic is replaced,
        and announced, once. Code version 1: the controller uses it once the cluster runs that version."""
        live = self.live_brokers()
        changed_topics: dict[str, list[PartitionState]] = {}
        codes = []
        for name, partition, leader_epoch, partition_epoch, isr in changes:
            states = changed_topics.get(name)
            if states is None:
                topic = self.topics.get(name)
                states = None if topic is None else list(topic.partitions)
            state = states[partition] if states is not None and 0 <= partition < len(states) else None
            code, changed = isr_change(state, leader, leader_epoch, partition_epoch, isr, live)
            if changed is not None:
                states[partition] = changed
                changed_topics[name] = states
            codes.append(code)
        if changed_topics:
            self.topics = {**self.topics, **{name: replace(self.topics[name], partitions=tuple(states))
                                             for name, states in changed_topics.items()}}
            for name in changed_topics:
                self._on_change(f"topic:{name}")
        return codes

    def _set_partition(self, topic: TopicState, partition: int, state: PartitionState) -> None:
        partitions = list(topic.partitions)
        partitions[partition] = state
        self.topics = {**self.topics, topic.name: replace(topic, partitions=tuple(partitions))}
        self._on_change(f"topic:{topic.name}")

    @replicated
    def elect_preferred_leaders(self) -> int:
        """Give each partition back to its first replica where that one is live and in sync; the count moved."""
        live = self.live_brokers()
        moved = 0

        def prefer(topic: TopicState, state: PartitionState) -> PartitionState:
            nonlocal moved
            preferred = state.replicas[0]
            if state.leader == preferred or preferred not in live or preferred not in state.isr:
                return state
            moved += 1
            return replace(state, leader=preferred, leader_epoch=state.leader_epoch + 1,
                           partition_epoch=state.partition_epoch + 1)

        self._change_partitions(prefer)
        return moved

    # ---- topics ------------------------------------------------------------------------

    @replicated
    def create_topic(self, topic: TopicState) -> int:
        """Add a topic; 0, or the TopicAlreadyExists code if another topic has the name."""
        existing = self.topics.get(topic.name)
        if existing is not None:
            return 0 if existing.topic_id == topic.topic_id else TopicAlreadyExistsError.code
        self.topics = {**self.topics, topic.name: topic}
        self._on_change(f"topic:{topic.name}")
        return 0

    @replicated
    def delete_topic(self, name: str, topic_id: str) -> int:
        """Remove the topic if it still has this id; 0, or the UnknownTopic code."""
        existing = self.topics.get(name)
        if existing is None or existing.topic_id != topic_id:
            return UnknownTopicError.code
        topics = dict(self.topics)
        del topics[name]
        self.topics = topics
        self._on_change(f"topic:{name}")
        return 0

    # ---- producer ids --------------------------------------------------------------------

    @replicated
    def allocate_producer_id_block(self) -> int:
        """Take the next PRODUCER_ID_BLOCK_SIZE producer ids for the controller that asked; the first one.

        Not idempotent: each commit takes a new block, which is what keeps ids
        unique when a controller retries or a new one takes over (a block
        lost that way is only skipped).
        """
        first = self.next_producer_id
        self.next_producer_id = first + PRODUCER_ID_BLOCK_SIZE
        return first


def _partition_of(topic: TopicState | None, partition: int) -> PartitionState | None:
    if topic is None or not 0 <= partition < len(topic.partitions):
        return None
    return topic.partitions[partition]


def isr_change(state: PartitionState | None, leader: int, leader_epoch: int, partition_epoch: int,
               isr: tuple[int, ...], live: set[int]) -> tuple[int, PartitionState | None]:
    """(0, the changed state) for a leader's valid ISR change of ``state`` (None: no such partition), else
    (the error code, None): UnknownTopic, FencedLeaderEpoch (another leader or epoch: a stale proposal),
    InvalidRequest (an empty ISR, a replica that is not one, or a fenced broker joining)."""
    if state is None:
        return UnknownTopicError.code, None
    if (state.leader, state.leader_epoch, state.partition_epoch) != (leader, leader_epoch, partition_epoch):
        return FencedLeaderEpochError.code, None
    if not isr or not set(isr) <= set(state.replicas) or not set(isr) - {leader} <= live:
        return InvalidRequestError.code, None
    ordered = tuple(replica for replica in state.replicas if replica in isr)
    changed = replace(state, isr=ordered, partition_epoch=partition_epoch + 1)
    if leader not in isr:
        changed = elect(changed, live - {leader}, unclean=False)
    return 0, changed


def partitions_led_by(topics: Iterable[TopicState], node_id: int) -> int:
    return sum(1 for topic in topics for state in topic.partitions if state.leader == node_id)
