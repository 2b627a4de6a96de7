"""Rill's client library: Producer, Consumer and Admin."""

from rill.client.admin import Admin
from rill.client.consumer import Consumer
from rill.client.producer import Producer
from rill.client.types import PartitionInfo, Record, RecordMetadata, TopicDescription, TopicPartition

__all__ = ["Admin", "Consumer", "Producer", "PartitionInfo", "Record", "RecordMetadata", "TopicDescription", "TopicPartition"]
