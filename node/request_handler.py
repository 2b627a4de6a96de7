"""Maps each request type to the part of the broker that serves it (Kafka's KafkaApis).

A handler returns a response struct, None (no response: acks=0), or an
awaitable of a response (long poll, Raft commit). Errors are raised as
typed RillErrors; the network server turns them into error responses.
"""

from __future__ import annotations

from typing import Callable

from rill.client import protocol
from rill.client.errors import RillError, UnknownTopicError
from rill.node.controller import Controller
from rill.node.metadata_state import MetadataState
from rill.node.replica_manager import ReplicaManager


class RequestHandler:
    """Dispatches decoded requests; called on the asyncio loop by the network server."""

    def __init__(self, state: MetadataState, controller: Controller, replicas: ReplicaManager,
                 controller_id: Callable[[], int]):
        self._state = state
        self._controller = controller
        self._replicas = replicas
        self._controller_id = controller_id
        self._routes = {
            protocol.API_VERSIONS.key: self.api_versions,
            protocol.METADATA.key: self.metadata,
            protocol.CREATE_TOPIC.key: self.create_topic,
            protocol.DELETE_TOPIC.key: self.delete_topic,
            protocol.DESCRIBE_CONFIGS.key: self.describe_configs,
            protocol.PRODUCE.key: replicas.produce,
            protocol.FETCH.key: replicas.fetch,
            protocol.LIST_OFFSETS.key: replicas.list_offsets,
        }

    def __call__(self, api: protocol.Api, request: object) -> object:
        return self._routes[api.key](request)

    def api_versions(self, request: protocol.ApiVersionsRequest) -> protocol.ApiVersionsResponse:
        return protocol.ApiVersionsResponse(
            [protocol.ApiVersionRange(api.key, api.min_version, api.max_version) for api in protocol.APIS.values()]
        )

    def metadata(self, request: protocol.MetadataRequest) -> protocol.MetadataResponse:
        topics = self._state.topics
        names = sorted(topics) if request.topics is None else request.topics
        brokers = [protocol.BrokerMetadata(b.node_id, b.host, b.port) for b in self._state.brokers.values()]
        return protocol.MetadataResponse(brokers, self._controller_id(), [self._topic_metadata(n) for n in names])

    def _topic_metadata(self, name: str) -> protocol.TopicMetadata:
        topic = self._state.topics.get(name)
        if topic is None:
            return protocol.TopicMetadata(name, UnknownTopicError.code, f"unknown topic {name!r}", [])
        partitions = [
            protocol.PartitionMetadata(index, 0, p.leader, p.leader_epoch, list(p.replicas), list(p.isr))
            for index, p in enumerate(topic.partitions)
        ]
        return protocol.TopicMetadata(name, 0, "", partitions)

    async def create_topic(self, request: protocol.CreateTopicRequest) -> protocol.TopicResult:
        try:
            await self._controller.create_topic(request.name, request.partitions, request.replication_factor,
                                                request.config)
        except RillError as error:
            return protocol.TopicResult(request.name, error.code, str(error))
        return protocol.TopicResult(request.name, 0, "")

    async def delete_topic(self, request: protocol.DeleteTopicRequest) -> protocol.TopicResult:
        try:
            await self._controller.delete_topic(request.name)
        except RillError as error:
            return protocol.TopicResult(request.name, error.code, str(error))
        return protocol.TopicResult(request.name, 0, "")

    def describe_configs(self, request: protocol.DescribeConfigsRequest) -> protocol.DescribeConfigsResponse:
        topic = self._state.topics.get(request.topic)
        if topic is None:
            return protocol.DescribeConfigsResponse(request.topic, UnknownTopicError.code,
                                                    f"unknown topic {request.topic!r}", {})
        return protocol.DescribeConfigsResponse(request.topic, 0, "", dict(topic.config))
