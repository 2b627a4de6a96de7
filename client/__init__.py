"""Rill's client library: Producer, Consumer and Admin."""

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

__all__ = [
    "Admin", "BrokerInfo", "ClusterDescription", "Consumer", "GroupDescription", "GroupMember", "GroupSummary",
    "PartitionInfo", "PartitionLag", "Producer", "Record", "RecordMetadata", "TopicDescription", "TopicPartition",
]
