"""Giving up leadership after a disk error: a leader whose replica went offline asks to leave the ISR.

Kafka moves the leadership of the replicas in a failed log directory to
other brokers. Here the leader of a partition whose replica went offline
(ReplicaManager.storage_failed) proposes, through the controller's AlterIsr,
the ISR without itself; the controller then elects another ISR member
(MetadataState.alter_isr), and clients that met StorageError find the new
leader on their next metadata refresh. A follower needs no request: it
stops fetching, and its leader drops it from the ISR after
``replica_lag_time_max_ms``. When this broker is the only in-sync replica,
nobody else has every committed record: the partition stays unavailable
(StorageError) until this broker restarts and recovers the log.
Runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from rill.client import protocol
from rill.client.errors import RillError
from rill.node.network.broker_client import BrokerClient, Spawn
from rill.node.replication.partition import Partition

log = logging.getLogger(__name__)

ALTER_ISR_TIMEOUT_MS = 3_000
RETRY_BACKOFF_S = 0.5
ATTEMPTS_MAX = 120  # about a minute of retries while no controller answers


class OfflineLeadership:
    """Asks the controller to move away the leadership of partitions whose replica here went offline."""

    def __init__(self, node_id: int, client: BrokerClient, controller_id: Callable[[], int], spawn: Spawn):
        self._node_id = node_id
        self._client = client
        self._controller_id = controller_id
        self._spawn = spawn
        self._in_flight: set[tuple[str, int]] = set()

    def step_down(self, partition: Partition) -> None:
        """Start asking (once per partition at a time) for an ISR without this broker, if it leads."""
        key = (partition.topic, partition.index)
        if key in self._in_flight:
            return
        self._in_flight.add(key)
        self._spawn(f"leaving the ISR of {partition.name}", self._leave(key, partition))

    async def _leave(self, key: tuple[str, int], partition: Partition) -> None:
        try:
            for _ in range(ATTEMPTS_MAX):
                if await self._ask_once(partition):
                    return
                await asyncio.sleep(RETRY_BACKOFF_S)
            log.error("%s: the controller did not take this broker out of the ISR; it stays offline here",
                      partition.name)
        finally:
            self._in_flight.discard(key)

    async def _ask_once(self, partition: Partition) -> bool:
        """One AlterIsr; True once there is nothing more to ask (done, not the leader, or the only member)."""
        state = partition.state
        if state.leader != self._node_id or self._node_id not in state.isr:
            return True
        isr = [replica for replica in state.isr if replica != self._node_id]
        if not isr:
            log.error("%s: this broker is the only in-sync replica; the partition stays unavailable until this "
                      "broker restarts and recovers its log", partition.name)
            return True
        request = protocol.AlterIsrRequest(self._node_id, partition.topic, partition.index, state.leader_epoch,
                                           state.partition_epoch, isr)
        try:
            result = await self._client.request(self._controller_id(), protocol.ALTER_ISR, request,
                                                ALTER_ISR_TIMEOUT_MS)
        except RillError as error:
            log.info("%s: asking to leave the ISR failed: %s", partition.name, error)
            return False
        if result.error_code:
            log.info("%s: leaving the ISR refused (retrying with the newest state): %s", partition.name,
                     result.error_message)
            return False
        log.warning("%s: left the ISR after a disk error; the controller elects a new leader", partition.name)
        return True
