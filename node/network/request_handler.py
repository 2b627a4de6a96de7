"""Maps each request type to the part of the broker that serves it (Kafka's KafkaApis).

A handler returns a response struct, None (no response: acks=0), or an
awaitable of a response (long poll, Raft commit). Errors are raised as
typed RillErrors; the network server turns them into error responses.

Requests arrive over two listeners. The client port (``__call__``) serves
everyone and refuses the broker-only requests (BROKER_APIS, and a fetch
that names a follower's replica id) with ClusterAuthorizationError: such a
fetch moves the high watermark, a registration redirects clients. The
inter-broker listener (``from_broker``) admits only peers holding the
cluster secret (internal_listener.py) and serves everything; even there a
registration must match the node list.
"""

from __future__ import annotations

import inspect
import random
from typing import Callable, Iterable

from rill.client import protocol
from rill.client.errors import (
    BrokerNotAvailableError,
    ClusterAuthorizationError,
    RillError,
    UnknownTopicError,
)
from rill.node.config import NodeAddress
from rill.node.coordinator.group_coordinator import GroupCoordinator
from rill.node.coordinator.offset_timestamps import offset_timestamps
from rill.node.metadata.controller import Controller
from rill.node.metadata.state import MetadataState
from rill.node.replication.replica_manager import ReplicaManager

CLIENT_APIS = {api.key for api in (protocol.METADATA, protocol.CREATE_TOPIC, protocol.DELETE_TOPIC,
                                   protocol.DESCRIBE_CONFIGS, protocol.PRODUCE, protocol.LIST_OFFSETS,
                                   protocol.ELECT_LEADERS, protocol.FIND_COORDINATOR,
                                   protocol.CONSUMER_GROUP_HEARTBEAT, protocol.OFFSET_COMMIT, protocol.OFFSET_FETCH,
                                   protocol.LIST_GROUPS, protocol.DESCRIBE_GROUP, protocol.DELETE_GROUP,
                                   protocol.INIT_PRODUCER_ID, *protocol.SCHEMA_APIS)}
BROKER_APIS = {api.key for api in (protocol.OFFSETS_FOR_LEADER_EPOCH, protocol.BROKER_REGISTRATION,
                                   protocol.BROKER_HEARTBEAT, protocol.ALTER_ISR, protocol.CONTROLLED_SHUTDOWN,
                                   protocol.CREATE_INTERNAL_TOPIC, protocol.OFFSET_TIMESTAMPS,
                                   protocol.ALTER_PARTITION)}


class RequestHandler:
    """Dispatches decoded requests; called on the asyncio loop by the network server."""

    def __init__(self, state: MetadataState, controller: Controller, replicas: ReplicaManager,
                 coordinator: GroupCoordinator, controller_id: Callable[[], int],
                 status: Callable[[], protocol.NodeStatusResponse], serving_clients: Callable[[], bool],
                 nodes: Iterable[NodeAddress], drop_produce_responses: float = 0.0):
        """``drop_produce_responses``: NodeConfig.testing_drop_produce_responses (for tests only)."""
        self._drop_produce_responses = drop_produce_responses
        self._drop_random = random.Random()
        self._state = state
        self._nodes = {node.node_id: node for node in nodes}
        self._serving_clients = serving_clients
        self._controller = controller
        self._replicas = replicas
        self._controller_id = controller_id
        self._routes = {
            protocol.API_VERSIONS.key: self.api_versions,
            protocol.METADATA.key: self.metadata,
            protocol.CREATE_TOPIC.key: self.create_topic,
            protocol.DELETE_TOPIC.key: self.delete_topic,
            protocol.CREATE_INTERNAL_TOPIC.key: lambda request: self.create_topic(request, internal=True),
            protocol.DESCRIBE_CONFIGS.key: self.describe_configs,
            protocol.PRODUCE.key: self.produce,
            protocol.FETCH.key: replicas.fetch,
            protocol.LIST_OFFSETS.key: replicas.list_offsets,
            protocol.OFFSETS_FOR_LEADER_EPOCH.key: replicas.offsets_for_leader_epoch,
            protocol.BROKER_REGISTRATION.key: self.broker_registration,
            protocol.BROKER_HEARTBEAT.key: self.broker_heartbeat,
            protocol.ALTER_ISR.key: self.alter_isr,
            protocol.ALTER_PARTITION.key: self.alter_partition,
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
            protocol.INIT_PRODUCER_ID.key: self.init_producer_id,
            protocol.OFFSET_TIMESTAMPS.key: lambda request: offset_timestamps(replicas, request),
        }

    def add_routes(self, routes: dict[int, Callable[[object], object]]) -> None:
        """Serve more APIs, each by its key: the schema registry's (node/schema/registry.py)."""
        self._routes.update(routes)

    def __call__(self, api: protocol.Api, request: object) -> object:
        """Serve a request from the client port: anything but what only brokers may ask."""
        if api.key in BROKER_APIS:
            raise ClusterAuthorizationError(f"{api.name} is a broker-only request; brokers send it to the "
                                            "inter-broker port, with the cluster's key")
        if api.key == protocol.FETCH.key and request.replica_id >= 0:
            raise ClusterAuthorizationError(f"a fetch as replica {request.replica_id} is a broker-only request; "
                                            "consumers fetch with replica_id -1")
        return self._serve(api, request)

    def from_broker(self, api: protocol.Api, request: object) -> object:
        """Serve a request from the inter-broker listener, whose peers proved they hold the cluster secret."""
        return self._serve(api, request)

    def _serve(self, api: protocol.Api, request: object) -> object:
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

    async def create_topic(self, request: protocol.CreateTopicRequest, internal: bool = False) -> protocol.TopicResult:
        """CREATE_TOPIC, or with ``internal`` CREATE_INTERNAL_TOPIC (the brokers' path to internal topics)."""
        try:
            await self._controller.create_topic(request.name, request.partitions, request.replication_factor,
                                                request.config, internal)
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
        self._check_registered_address(request)
        await self._controller.register_broker(request)
        return protocol.BrokerResult(0, "")

    def _check_registered_address(self, request: protocol.BrokerRegistrationRequest) -> None:
        """A broker registers only under an id of the node list, with that id's client address:
        clients go where the metadata says, so a registration must not be able to move them."""
        node = self._nodes.get(request.node_id)
        if node is None:
            raise ClusterAuthorizationError(f"broker {request.node_id} is not in the node list {sorted(self._nodes)}")
        if (request.host, request.port) != (node.host, node.port):
            raise ClusterAuthorizationError(f"broker {request.node_id} registered as {request.host}:{request.port}, "
                                            f"but the node list has it at {node.host}:{node.port}")

    def broker_heartbeat(self, request: protocol.BrokerHeartbeatRequest) -> protocol.BrokerResult:
        self._controller.heartbeat(request)
        return protocol.BrokerResult(0, "")

    async def alter_isr(self, request: protocol.AlterIsrRequest) -> protocol.BrokerResult:
        try:
            await self._controller.alter_isr(request)
        except RillError as error:
            return protocol.BrokerResult(error.code, str(error))
        return protocol.BrokerResult(0, "")

    async def alter_partition(self, request: protocol.AlterPartitionRequest) -> protocol.AlterPartitionResponse:
        try:
            return await self._controller.alter_partition(request)
        except RillError as error:
            return protocol.AlterPartitionResponse(error.code, str(error), [])

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

    # ---- idempotent producers ------------------------------------------------------------

    async def init_producer_id(self, request: protocol.InitProducerIdRequest) -> protocol.InitProducerIdResponse:
        """A new producer id at epoch 0, from the controller (elsewhere: NotControllerError in the body)."""
        try:
            producer_id = await self._controller.init_producer_id()
        except RillError as error:
            return protocol.InitProducerIdResponse(error.code, str(error), -1, -1)
        return protocol.InitProducerIdResponse(0, "", producer_id, 0)

    def produce(self, request: protocol.ProduceRequest) -> object:
        """PRODUCE. With testing_drop_produce_responses, that fraction of the produces that expect an answer
        is appended as usual but left unanswered, so that tests see the client time out and retry."""
        result = self._replicas.produce(request)
        if request.acks == 0 or self._drop_random.random() >= self._drop_produce_responses:
            return result
        return _unanswered(result)


async def _unanswered(result: object) -> None:
    """Let a produce finish (an acks=all one waits for the replicas), then send nothing back."""
    if inspect.isawaitable(result):
        try:
            await result
        except RillError:
            pass
