"""The client's view of the cluster: brokers, and who leads each partition.

Refreshed from any live broker (bootstrap list first, then known brokers)
when a topic is new, and after NotLeader, UnknownTopic and timeout errors.
Not thread-safe: owned by the thread that owns its NetworkClient.
"""

from __future__ import annotations

import random
import time

from rill.client import protocol
from rill.client.errors import BrokerNotAvailableError, RillError, UnknownTopicError, error_for_code
from rill.client.network import FAST_CONNECT_TIMEOUT_MS, NetworkClient


class ClusterMetadata:
    """Brokers and partition leaders as last reported by a broker."""

    def __init__(self, bootstrap: list[str]):
        self.bootstrap = bootstrap
        self.brokers: dict[int, str] = {}
        self.controller_id = -1
        self.partitions: dict[str, list[protocol.PartitionMetadata]] = {}
        self.errors: dict[str, RillError] = {}
        self.updated_at = 0.0

    def addresses(self) -> list[str]:
        """Brokers to ask, known ones first in random order, then the bootstrap list."""
        known = list(self.brokers.values())
        random.shuffle(known)
        return known + [address for address in self.bootstrap if address not in known]

    def update(self, response: protocol.MetadataResponse, every_topic: bool = False) -> None:
        """Take a broker's answer; with ``every_topic`` it lists all topics, so forget the others."""
        if every_topic:
            self.partitions = {}
        self.brokers = {b.node_id: f"{b.host}:{b.port}" for b in response.brokers}
        self.controller_id = response.controller_id
        for topic in response.topics:
            if topic.error_code:
                self.partitions.pop(topic.name, None)
                self.errors[topic.name] = error_for_code(topic.error_code, topic.error_message)
            else:
                self.errors.pop(topic.name, None)
                self.partitions[topic.name] = sorted(topic.partitions, key=lambda p: p.partition)
        self.updated_at = time.monotonic()

    def refresh(self, network: NetworkClient, topics: list[str] | None, timeout_ms: int) -> None:
        """Ask brokers in turn until one answers; raises BrokerNotAvailableError if none does."""
        deadline = time.monotonic() + timeout_ms / 1000
        last_error: RillError | None = None
        for address in self.addresses():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            try:
                response = network.request(address, protocol.METADATA, protocol.MetadataRequest(topics),
                                           min(remaining_ms, 5_000), connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
            except RillError as error:
                last_error = error
                continue
            self.update(response, every_topic=topics is None)
            return
        raise BrokerNotAvailableError(f"no broker of {self.addresses()} answered: {last_error}")

    def partition_count(self, topic: str) -> int | None:
        partitions = self.partitions.get(topic)
        return None if partitions is None else len(partitions)

    def leader_address(self, topic: str, partition: int) -> str | None:
        partitions = self.partitions.get(topic)
        if partitions is None or not 0 <= partition < len(partitions):
            return None
        return self.brokers.get(partitions[partition].leader)

    def controller_address(self) -> str | None:
        return self.brokers.get(self.controller_id)

    def topic_error(self, topic: str) -> RillError:
        return self.errors.get(topic) or UnknownTopicError(f"unknown topic {topic!r}")
