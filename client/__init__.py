"""Rill's client library: Producer, Consumer and Admin."""

from rill.client.admin import Admin
from rill.client.consumer import Consumer
from rill.client.producer import Producer
from rill.client.types import (
    BrokerInfo,
    ClusterDescription,
    PartitionInfo,
    Record,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
)

__all__ = [
    "Admin", "BrokerInfo", "ClusterDescription", "Consumer", "Producer", "PartitionInfo", "Record",
    "RecordMetadata", "TopicDescription", "TopicPartition",
]
