"""Maps each request type to the part of the broker that serves it (Kafka's KafkaApis).

A handler returns a response struct, None (no response: acks=0), or an
awaitable of a response (long poll, Raft commit). Errors are raised as
typed RillErrors; the network server turns them into error responses.
"""

from __future__ import annotations

from typing import Callable

from rill.client import protocol
from rill.client.errors import BrokerNotAvailableError, RillError, UnknownTopicError
from rill.node.coordinator.group_coordinator import GroupCoordinator
from rill.node.metadata.controller import Controller
from rill.node.metadata.state import MetadataState
from rill.node.replication.replica_manager import ReplicaManager

CLIENT_APIS = {api.key for api in (protocol.METADATA, protocol.CREATE_TOPIC, protocol.DELETE_TOPIC,
                                   protocol.DESCRIBE_CONFIGS, protocol.PRODUCE, protocol.LIST_OFFSETS,
                                   protocol.ELECT_LEADERS, protocol.FIND_COORDINATOR,
                                   protocol.CONSUMER_GROUP_HEARTBEAT, protocol.OFFSET_COMMIT, protocol.OFFSET_FETCH,
                                   protocol.LIST_GROUPS, protocol.DESCRIBE_GROUP, protocol.DELETE_GROUP)}


class RequestHandler:
    """Dispatches decoded requests; called on the asyncio loop by the network server."""

    def __init__(self, state: MetadataState, controller: Controller, replicas: ReplicaManager,
                 coordinator: GroupCoordinator, controller_id: Callable[[], int],
                 status: Callable[[], protocol.NodeStatusResponse], serving_clients: Callable[[], bool]):
        self._state = state
        self._serving_clients = serving_clients
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
            protocol.OFFSETS_FOR_LEADER_EPOCH.key: replicas.offsets_for_leader_epoch,
            protocol.BROKER_REGISTRATION.key: self.broker_registration,
            protocol.BROKER_HEARTBEAT.key: self.broker_heartbeat,
            protocol.ALTER_ISR.key: self.alter_isr,
            protocol.CONTROLLED_SHUTDOWN.key: self.controlled_shutdown,
            protocol.ELECT_LEADERS.key: self.elect_leaders,
            protocol.NODE_STATUS.key: lambda request: status(),
            protocol.FIND_COORDINATOR.key: coordinator.find_coordinator,
            protocol.CONSUMER_GROUP_HEARTBEAT.key: coordinator.heartbeat,
            protocol.OFFSET_COMMIT.key: coordinator.commit,
            protocol.OFFSET_FETCH.key: coordinator.fetch_offsets,
            protocol.LIST_GROUPS.key: coordinator.list_groups,
            protocol.DESCRIBE_GROUP.key: coordinator.describe_group,
            protocol.DELETE_GROUP.key: coordinator.delete_group,
        }

    def __call__(self, api: protocol.Api, request: object) -> object:
        if api.key in CLIENT_APIS and not self._serving_clients():
            raise BrokerNotAvailableError("the broker is starting: not registered with the controller yet")
        return self._routes[api.key](request)

    def api_versions(self, request: protocol.ApiVersionsRequest) -> protocol.ApiVersionsResponse:
        return protocol.ApiVersionsResponse(
            [protocol.ApiVersionRange(api.key, api.min_version, api.max_version) for api in protocol.APIS.values()]
        )

    def metadata(self, request: protocol.MetadataRequest) -> protocol.MetadataResponse:
        topics = self._state.topics
        names = sorted(topics) if request.topics is None else request.topics
        brokers = [protocol.BrokerMetadata(b.node_id, b.host, b.port)
                   for b in self._state.brokers.values() if not b.fenced]
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

    async def broker_registration(self, request: protocol.BrokerRegistrationRequest) -> protocol.BrokerResult:
        await self._controller.register_broker(request)
        return protocol.BrokerResult(0, "")

    def broker_heartbeat(self, request: protocol.BrokerHeartbeatRequest) -> protocol.BrokerResult:
        self._controller.heartbeat(request)
        return protocol.BrokerResult(0, "")

    async def alter_isr(self, request: protocol.AlterIsrRequest) -> protocol.BrokerResult:
        try:
            await self._controller.alter_isr(request)
        except RillError as error:
            return protocol.BrokerResult(error.code, str(error))
        return protocol.BrokerResult(0, "")

    async def controlled_shutdown(self, request: protocol.ControlledShutdownRequest
                                  ) -> protocol.ControlledShutdownResponse:
        led = await self._controller.controlled_shutdown(request)
        return protocol.ControlledShutdownResponse(0, "", led)

    async def elect_leaders(self, request: protocol.ElectLeadersRequest) -> protocol.ElectLeadersResponse:
        moved = await self._controller.elect_preferred_leaders()
        return protocol.ElectLeadersResponse(0, "", moved)

    def describe_configs(self, request: protocol.DescribeConfigsRequest) -> protocol.DescribeConfigsResponse:
        topic = self._state.topics.get(request.topic)
        if topic is None:
            return protocol.DescribeConfigsResponse(request.topic, UnknownTopicError.code,
                                                    f"unknown topic {request.topic!r}", {})
        return protocol.DescribeConfigsResponse(request.topic, 0, "", dict(topic.config))
