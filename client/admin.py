"""Admin: create, list, describe and delete topics.

Blocking calls, safe to share between threads (one lock around the
network client). Metadata changes go to the controller; a NotController or
connection error refreshes metadata and retries until the request timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from rill.client import protocol
from rill.client.errors import (
    BrokerNotAvailableError,
    NotControllerError,
    RequestTimeoutError,
    RillError,
    UnknownTopicError,
    error_for_code,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import FAST_CONNECT_TIMEOUT_MS, NetworkClient, parse_bootstrap
from rill.client.types import BrokerInfo, ClusterDescription, PartitionInfo, TopicDescription

RETRY_BACKOFF_S = 0.1
CONTROLLER_RETRIABLE = (NotControllerError, BrokerNotAvailableError, RequestTimeoutError)


class Admin:
    """Topic administration against a cluster reached through ``bootstrap`` ("host:port[,...]")."""

    def __init__(self, bootstrap: str, request_timeout_ms: int = 30_000, client_id: str = "rill-admin"):
        self._metadata = ClusterMetadata(parse_bootstrap(bootstrap))
        self._context = zmq.Context()
        self._network = NetworkClient(self._context, client_id)
        self._timeout_ms = request_timeout_ms
        self._lock = threading.Lock()

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._network.close()
            self._context.term()

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: dict[str, Any] | None = None) -> None:
        """Create a topic; raises TopicAlreadyExistsError, InvalidConfigError, InvalidReplicationFactorError, ..."""
        body = protocol.CreateTopicRequest(name, partitions, replication_factor,
                                           {str(k): _config_value(v) for k, v in (config or {}).items()},
                                           self._timeout_ms)
        _raise_for(self._controller_request(protocol.CREATE_TOPIC, body))

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its data; raises UnknownTopicError if there is none."""
        _raise_for(self._controller_request(protocol.DELETE_TOPIC, protocol.DeleteTopicRequest(name, self._timeout_ms)))

    def list_topics(self) -> list[str]:
        """Names of every topic, sorted."""
        with self._lock:
            self._metadata.refresh(self._network, None, self._timeout_ms)
            return sorted(self._metadata.partitions)

    def describe_cluster(self) -> ClusterDescription:
        """The live (unfenced) brokers and the controller's node id."""
        with self._lock:
            response = self._any_broker(protocol.METADATA, protocol.MetadataRequest([]))
        brokers = sorted((BrokerInfo(b.node_id, b.host, b.port) for b in response.brokers), key=lambda b: b.node_id)
        return ClusterDescription(brokers, response.controller_id)

    def elect_leaders(self) -> int:
        """Move each partition's leadership back to its preferred (first) replica where that one is in
        sync; returns how many partitions moved."""
        response = self._controller_request(protocol.ELECT_LEADERS, protocol.ElectLeadersRequest(self._timeout_ms))
        if response.error_code:
            raise error_for_code(response.error_code, response.error_message)
        return response.moved

    def describe_topic(self, name: str) -> TopicDescription:
        """Partitions (leader, replicas, ISR, leader epoch, high watermark, log start) and full config."""
        with self._lock:
            self._metadata.refresh(self._network, [name], self._timeout_ms)
            if name not in self._metadata.partitions:
                raise self._metadata.topic_error(name)
            config = self._any_broker(protocol.DESCRIBE_CONFIGS, protocol.DescribeConfigsRequest(name))
            if config.error_code:
                raise error_for_code(config.error_code, config.error_message)
            partitions = [self._partition_info(name, p) for p in self._metadata.partitions[name]]
        return TopicDescription(name, partitions, config.config)

    def _partition_info(self, topic: str, metadata: protocol.PartitionMetadata) -> PartitionInfo:
        high_watermark = start = -1
        address = self._metadata.brokers.get(metadata.leader)
        if address is not None:
            high_watermark = self._offset(address, topic, metadata.partition, protocol.LATEST_TIMESTAMP)
            start = self._offset(address, topic, metadata.partition, protocol.EARLIEST_TIMESTAMP)
        return PartitionInfo(metadata.partition, metadata.leader, list(metadata.replicas), list(metadata.isr),
                             metadata.leader_epoch, high_watermark, start)

    def _offset(self, address: str, topic: str, partition: int, timestamp: int) -> int:
        request = protocol.ListOffsetsRequest(
            [protocol.TopicListOffsets(topic, [protocol.PartitionListOffsets(partition, timestamp)])]
        )
        try:
            response = self._network.request(address, protocol.LIST_OFFSETS, request, self._timeout_ms,
                                             connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
        except RillError:
            return -1
        result = response.topics[0].partitions[0]
        return -1 if result.error_code else result.offset

    def _any_broker(self, api: protocol.Api, body: Any) -> Any:
        last_error: RillError | None = None
        for address in self._metadata.addresses():
            try:
                return self._network.request(address, api, body, self._timeout_ms)
            except RillError as error:
                last_error = error
        raise last_error or UnknownTopicError("no broker answered")

    def _controller_request(self, api: protocol.Api, body: Any) -> Any:
        """Send to the controller, refreshing metadata and retrying retriable errors until the timeout."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        with self._lock:
            for _ in range(1_000):
                try:
                    self._metadata.refresh(self._network, [], self._timeout_ms)
                    address = self._metadata.controller_address() or self._metadata.addresses()[0]
                    result = self._network.request(address, api, body, self._timeout_ms)
                    error: RillError = error_for_code(result.error_code, result.error_message)
                    if not result.error_code or not isinstance(error, CONTROLLER_RETRIABLE):
                        return result
                except CONTROLLER_RETRIABLE as raised:
                    error = raised
                if time.monotonic() + RETRY_BACKOFF_S >= deadline:
                    raise error
                time.sleep(RETRY_BACKOFF_S)
        raise error


def _config_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _raise_for(result: protocol.TopicResult) -> None:
    if result.error_code:
        raise error_for_code(result.error_code, result.error_message)
