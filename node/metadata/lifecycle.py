"""This broker's standing with the controller: registration, heartbeats, controlled shutdown.

A broker registers with a new incarnation (its start time) each time it
starts, then heartbeats every ``heartbeat_interval_ms``; when the
controller answers StaleBrokerEpoch (it fenced this broker, or a new
controller does not know it), the broker registers again. On SIGTERM it asks
the controller to move its leaderships away before it stops, so clients
see NotLeader and move on instead of timing out. Runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from rill.client import protocol
from rill.client.errors import ClusterAuthorizationError, RillError, StaleBrokerEpochError, error_for_code
from rill.node.config import NodeConfig
from rill.node.metadata.state import RAFT_CODE_VERSION, MetadataState
from rill.node.network.broker_client import BrokerClient

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 2_000
NO_CONTROLLER_GIVE_UP_S = 3.0


class BrokerLifecycle:
    """Keeps this broker registered and alive in the controller's eyes."""

    def __init__(self, config: NodeConfig, client: BrokerClient, state: MetadataState,
                 controller_id: Callable[[], int]):
        self._config = config
        self._client = client
        self._state = state
        self._controller_id = controller_id
        self.incarnation = time.time_ns()
        self._interval_s = config.heartbeat_interval_ms / 1000
        self._last_refusal = ""

    @property
    def registered(self) -> bool:
        broker = self._state.brokers.get(self._config.node_id)
        return broker is not None and broker.incarnation == self.incarnation and not broker.fenced

    async def run(self) -> None:
        """Register, then heartbeat, forever (cancelled at shutdown)."""
        while True:
            started = time.monotonic()
            try:
                await self._beat()
            except ClusterAuthorizationError as error:
                self._refused(error)
            except RillError as error:
                log.debug("controller request failed: %s", error)
            await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    def _refused(self, error: ClusterAuthorizationError) -> None:
        """The controller will not have this broker as it is configured (the nodes' node lists differ):
        only the operator can fix that, so say so, once per reason rather than every beat."""
        if str(error) != self._last_refusal:
            self._last_refusal = str(error)
            log.error("the controller refuses to register this broker: %s", error)

    async def wait_registered(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.registered and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.registered

    async def _beat(self) -> None:
        controller = self._controller_id()
        if controller < 0:
            return
        if not self.registered:
            await self._register(controller)
            return
        request = protocol.BrokerHeartbeatRequest(self._config.node_id, self.incarnation, RAFT_CODE_VERSION)
        try:
            # A heartbeat waits no longer than one interval: when the controller hangs, the next beat
            # goes to whichever node Raft elects instead, which gives every broker a full session.
            await self._client.request(controller, protocol.BROKER_HEARTBEAT, request,
                                       self._config.heartbeat_interval_ms)
        except StaleBrokerEpochError:
            await self._register(controller)

    async def _register(self, controller: int) -> None:
        me = self._config.me
        request = protocol.BrokerRegistrationRequest(me.node_id, me.host, me.port, self.incarnation,
                                                     self._config.cluster_id)
        result = await self._client.request(controller, protocol.BROKER_REGISTRATION, request, REQUEST_TIMEOUT_MS)
        if result.error_code:
            raise error_for_code(result.error_code, result.error_message)
        log.info("registered with controller %d (incarnation %d)", controller, self.incarnation)

    async def controlled_shutdown(self, timeout_s: float) -> bool:
        """Ask the controller to move this broker's leaderships away; True once it leads nothing.

        Gives up early when no controller has answered for NO_CONTROLLER_GIVE_UP_S: when the
        whole cluster stops together there is nobody left to take over.
        """
        deadline = time.monotonic() + timeout_s
        last_answer = time.monotonic()
        request = protocol.ControlledShutdownRequest(self._config.node_id, self.incarnation)
        while time.monotonic() < deadline and time.monotonic() - last_answer < NO_CONTROLLER_GIVE_UP_S:
            controller = self._controller_id()
            try:
                if controller >= 0:
                    response = await self._client.request(controller, protocol.CONTROLLED_SHUTDOWN, request,
                                                          REQUEST_TIMEOUT_MS)
                    last_answer = time.monotonic()
                    if not response.error_code and response.partitions_led == 0:
                        return True
            except RillError as error:
                log.info("controlled shutdown request failed: %s", error)
            await asyncio.sleep(0.1)
        return False
