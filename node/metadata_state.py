"""The cluster metadata, replicated by Raft (pysyncobj) on every broker.

Holds the registered brokers and every topic: its config and, per
partition, replicas, leader, leader epoch and ISR. Only ``@replicated``
methods change it, so every broker applies the same changes in the same
order; the journal and a full dump under the node's data dir make it
survive restarts (ARCHITECTURE.md, "pysyncobj, used safely").

Thread-safety: pysyncobj applies commands on its own thread. Each command
replaces the dicts it changes with new ones (copy on write) and values are
immutable, so the asyncio thread may read ``topics`` and ``brokers`` at any
time without a lock and sees either the old or the new state, never half.
Every command is idempotent: applying one twice leaves the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pysyncobj import SyncObjConf, SyncObjConsumer, replicated

from rill.client.errors import TopicAlreadyExistsError, UnknownTopicError


@dataclass(frozen=True)
class BrokerRegistration:
    node_id: int
    host: str
    port: int
    incarnation: int


@dataclass(frozen=True)
class PartitionState:
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]


@dataclass(frozen=True)
class TopicState:
    name: str
    topic_id: str
    config: dict[str, str]
    partitions: tuple[PartitionState, ...]


def raft_conf(data_dir: Path, on_ready: Callable[[], None] | None = None) -> SyncObjConf:
    """pysyncobj settings: persisted journal and dump, batching off, fast ticks.

    autoTickPeriod 5 ms bounds how long a committed command waits to be
    applied (the 50 ms default made each metadata change take 50 ms).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    return SyncObjConf(
        journalFile=str(data_dir / "raft.journal"),
        fullDumpFile=str(data_dir / "raft.dump"),
        appendEntriesUseBatch=False,
        appendEntriesPeriod=0.02,
        raftMinTimeout=0.2,
        raftMaxTimeout=0.4,
        leaderFallbackTimeout=0.5,
        connectionTimeout=1.0,
        autoTickPeriod=0.005,
        commandsWaitLeader=True,
        dynamicMembershipChange=False,
        onReady=on_ready,
    )


class MetadataState(SyncObjConsumer):
    """Brokers and topics, changed only through replicated, idempotent commands.

    A pysyncobj consumer: attributes set before ``super().__init__`` (the
    change callback) are not part of the replicated state; those set after are
    pickled into the Raft dump.
    """

    def __init__(self, on_change: Callable[[str], None]):
        self._on_change = on_change
        super().__init__()
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[str, TopicState] = {}

    @replicated
    def register_broker(self, registration: BrokerRegistration) -> int:
        """Add or replace a broker's registration; returns its incarnation."""
        current = self.brokers.get(registration.node_id)
        if current is None or current.incarnation <= registration.incarnation:
            self.brokers = {**self.brokers, registration.node_id: registration}
            self._on_change("brokers")
        return self.brokers[registration.node_id].incarnation

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
