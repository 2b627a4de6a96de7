"""Rill's client library: Producer, Consumer and Admin.

The public names load on first use (PEP 562), so the broker, which imports
only the wire modules (``protocol``, ``batch``, ``errors``, ``types``), does
not load the producer, consumer and admin with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rill.client.admin import Admin
    from rill.client.consumer import Consumer
    from rill.client.producer import Producer
    from rill.client.types import (
        BrokerInfo,
        ClusterDescription,
        GroupDescription,
        GroupMember,
        GroupSummary,
        PartitionInfo,
        PartitionLag,
        Record,
        RecordMetadata,
        TopicDescription,
        TopicPartition,
    )

_HOMES = {
    "Admin": "admin", "Consumer": "consumer", "Producer": "producer",
    **{name: "types" for name in (
        "BrokerInfo", "ClusterDescription", "GroupDescription", "GroupMember", "GroupSummary", "PartitionInfo",
        "PartitionLag", "Record", "RecordMetadata", "TopicDescription", "TopicPartition",
    )},
}

__all__ = [
    "Admin", "BrokerInfo", "ClusterDescription", "Consumer", "GroupDescription", "GroupMember", "GroupSummary",
    "PartitionInfo", "PartitionLag", "Producer", "Record", "RecordMetadata", "TopicDescription", "TopicPartition",
]
assert sorted(__all__) == sorted(_HOMES)


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'rill.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rill.client.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
