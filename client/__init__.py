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
    from rill.client.batch_future import BatchFuture, BatchMetadata
    from rill.client.consumer import Consumer
    from rill.client.producer import Producer
    from rill.client.record_columns import BytesColumn, RecordColumns
    from rill.client.handler import HandlerStats, run_handler
    from rill.client.retry_policy import Retry
    from rill.client.json_schema import JsonSchemaDeserializer, JsonSchemaSerializer
    from rill.client.schema_registry import CompatibilityReport, SchemaVersion
    from rill.client.serialization import (
        Deserializer,
        JsonDeserializer,
        JsonSerializer,
        MsgspecDeserializer,
        MsgspecSerializer,
        Serializer,
    )
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
    **{name: "serialization" for name in (
        "Deserializer", "JsonDeserializer", "JsonSerializer", "MsgspecDeserializer", "MsgspecSerializer", "Serializer",
    )},
    "HandlerStats": "handler", "run_handler": "handler", "Retry": "retry_policy",
    "JsonSchemaSerializer": "json_schema", "JsonSchemaDeserializer": "json_schema",
    "SchemaVersion": "schema_registry", "CompatibilityReport": "schema_registry",
    "BatchFuture": "batch_future", "BatchMetadata": "batch_future",
    "BytesColumn": "record_columns", "RecordColumns": "record_columns",
}

__all__ = [
    "Admin", "BrokerInfo", "ClusterDescription", "Consumer", "GroupDescription", "GroupMember", "GroupSummary",
    "PartitionInfo", "PartitionLag", "Producer", "Record", "RecordMetadata", "TopicDescription", "TopicPartition",
    "Deserializer", "JsonDeserializer", "JsonSerializer", "MsgspecDeserializer", "MsgspecSerializer", "Serializer",
    "HandlerStats", "run_handler", "Retry",
    "JsonSchemaSerializer", "JsonSchemaDeserializer", "SchemaVersion", "CompatibilityReport",
    "BatchFuture", "BatchMetadata", "BytesColumn", "RecordColumns",
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
