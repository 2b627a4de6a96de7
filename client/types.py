"""The public value types that the client API returns."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import msgspec

EMPTY_HEADERS: Mapping[str, bytes] = MappingProxyType({})


class Record(msgspec.Struct, gc=False):
    """One consumed record. ``headers`` is a read-only mapping of name to bytes."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
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
