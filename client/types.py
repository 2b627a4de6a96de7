"""The public value types that the client API returns."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import msgspec

EMPTY_HEADERS: Mapping[str, bytes] = MappingProxyType({})


class Record(msgspec.Struct, gc=False):
    """One consumed record. ``headers`` is a read-only mapping of name to bytes. ``key`` and ``value`` are
    bytes (or None), or what the consumer's key/value deserializer made of them."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None | Any
    value: bytes | None | Any
    headers: Mapping[str, bytes]


class RecordMetadata(msgspec.Struct, frozen=True):
    """Where an acknowledged record was stored. offset is -1 when acks=0."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class PartitionInfo(msgspec.Struct, frozen=True):
    """One partition of a topic: its leader broker, replicas, in-sync replicas and leader epoch."""

    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    leader_epoch: int
    high_watermark: int = -1
    log_start_offset: int = -1


class TopicDescription(msgspec.Struct, frozen=True):
    """A topic's partitions and its configuration (every setting, defaults included)."""

    name: str
    partitions: list[PartitionInfo]
    config: dict[str, str]


class BrokerInfo(msgspec.Struct, frozen=True):
    """One live broker: its node id and client address."""

    node_id: int
    host: str
    port: int


class ClusterDescription(msgspec.Struct, frozen=True):
    """The live brokers and which one is the controller (-1 while there is none)."""

    brokers: list[BrokerInfo]
    controller_id: int


class TopicPartition(msgspec.Struct, frozen=True, order=True):
    """A (topic, partition) pair, usable as a dict key."""

    topic: str
    partition: int


class GroupSummary(msgspec.Struct, frozen=True):
    """One consumer group as ``list_groups`` shows it: its state and how many members it has."""

    group_id: str
    state: str
    members: int


class GroupMember(msgspec.Struct, frozen=True):
    """One member of a consumer group: who it is, what it subscribes to and what it is assigned."""

    member_id: str
    client_id: str
    member_epoch: int
    subscribed_topics: list[str]
    subscribed_pattern: str
    assignment: list[TopicPartition]


class PartitionLag(msgspec.Struct, frozen=True):
    """A group's position in one partition.

    ``committed_offset`` is None when the group committed nothing there; ``log_end_offset`` is the
    high watermark (-1 when the topic no longer exists or its leader did not answer); ``lag`` (records)
    is None when either is unknown. ``lag_seconds`` is how old the first uncommitted record is (now
    minus its timestamp): 0.0 when the group is caught up or the lag is unknown, never negative.
    ``owner`` is the member id of the member holding the partition, None when no member does.
    The group's coordinator computes all of them.
    """

    topic: str
    partition: int
    committed_offset: int | None
    log_end_offset: int
    lag: int | None
    lag_seconds: float = 0.0
    owner: str | None = None


class GroupDescription(msgspec.Struct, frozen=True):
    """A consumer group: state ("Empty", "Reconciling", "Stable"), epoch, members, and lag per partition.

    ``lag_state`` is the coordinator's verdict on the lag: "OK", "CATCHING_UP" (commits move but the
    oldest uncommitted record is older than the broker's ``group_stalled_after_ms``) or "STALLED" (some
    partition has had lag and no new commit for that long).
    """

    group_id: str
    state: str
    group_epoch: int
    assignor: str
    members: list[GroupMember]
    partitions: list[PartitionLag]
    total_lag: int
    lag_state: str = "OK"
