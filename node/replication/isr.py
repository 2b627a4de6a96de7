"""ISR upkeep on a leader: shrink the in-sync set when a follower falls behind, expand it when one catches up.

Every ``ISR_CHECK_MS`` the node asks the partitions it leads that are
watched which ISR they want (followers that fetched up to the log end within
``replica_lag_time_max_ms``). Watched are those touched since the last
check (an append, a high-watermark move, a metadata change) and those still
short of a full, caught-up ISR, plus a slice of all led partitions, so that
each is looked at within ``ISR_SWEEP_S``: an idle partition costs nothing
per check, and a follower that stalls on one is still dropped (an idle
partition's ISR matters only once records arrive, which touches it). A
change is proposed to the controller as an AlterIsr request carrying the
leader and partition epochs, so a stale leader's proposal is refused. One proposal per partition is in flight at a time; the
partition remembers it (``proposed_isr``) so the high watermark already counts
with the larger of the two sets while the controller decides (KIP-497).
Runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Callable

from rill.client import protocol
from rill.client.errors import RillError
from rill.node.network.broker_client import BrokerClient
from rill.node.replication.partition import Partition
from rill.node.replication.replica_manager import ReplicaManager
from rill.node.structured_logging import log_event

log = logging.getLogger(__name__)

ISR_CHECK_MS = 250
ISR_SWEEP_S = 5.0
ALTER_ISR_TIMEOUT_MS = 3_000


class IsrUpkeep:
    """Proposes ISR changes for the partitions this broker leads."""

    def __init__(self, node_id: int, client: BrokerClient, replicas: ReplicaManager,
                 controller_id: Callable[[], int], replica_lag_time_max_ms: int):
        self._node_id = node_id
        self._client = client
        self._replicas = replicas
        self._controller_id = controller_id
        self._lag_s = replica_lag_time_max_ms / 1000
        self._in_flight: set[tuple[str, int]] = set()
        self._watched: set[tuple[str, int]] = set()
        self._sweep: list[tuple[str, int]] = []  # led partitions not looked at yet in this sweep
        self._per_check = 1

    async def check(self) -> None:
        """Propose the wanted ISR of every watched led partition whose ISR should change; nothing while no
        controller is known (the proposals could only fail, each logged), the watched ones wait."""
        self._watched |= self._replicas.touched
        self._replicas.touched.clear()
        controller_known = self._controller_id() >= 0
        for key in self._watched | set(self._sweep_slice()):
            partition = self._replicas.partitions.get(key)
            if partition is None or not partition.is_leader or partition.offline:
                self._watched.discard(key)
                continue
            wanted = partition.wanted_isr(self._lag_s)
            if wanted is None and not partition.under_replicated \
                    and partition.high_watermark >= partition.log.log_end_offset:
                self._watched.discard(key)  # settled: looked at again when touched, or by the sweep
            else:
                self._watched.add(key)
            if wanted is not None and key not in self._in_flight and controller_known:
                self._in_flight.add(key)
                partition.propose_isr(wanted)
                asyncio.ensure_future(self._alter(key, partition, wanted))

    def _sweep_slice(self) -> list[tuple[str, int]]:
        """The next led partitions of the sweep, enough for every one to be seen within ISR_SWEEP_S."""
        if not self._sweep:
            self._sweep = [(p.topic, p.index) for p in self._replicas.leader_partitions()]
            self._per_check = max(1, math.ceil(len(self._sweep) * ISR_CHECK_MS / 1000 / ISR_SWEEP_S))
        taken = self._sweep[-self._per_check:]
        del self._sweep[-self._per_check:]
        return taken

    async def _alter(self, key: tuple[str, int], partition: Partition, isr: tuple[int, ...]) -> None:
        state = partition.state
        request = protocol.AlterIsrRequest(self._node_id, partition.topic, partition.index,
                                           state.leader_epoch, state.partition_epoch, list(isr))
        try:
            result = await self._client.request(self._controller_id(), protocol.ALTER_ISR, request,
                                                ALTER_ISR_TIMEOUT_MS)
            if result.error_code:
                log.debug("%s: ISR change to %s refused: %s", partition.name, isr, result.error_message)
                _forget_proposal(partition, isr)
            else:
                log_event(log, logging.INFO, "isr_change", f"{partition.name}: ISR {list(state.isr)} -> {list(isr)}",
                          topic=partition.topic, partition=partition.index, old_isr=list(state.isr),
                          new_isr=list(isr), leader_epoch=state.leader_epoch, source="leader")
        except RillError as error:
            log_event(log, logging.INFO, "isr_change_failed", f"{partition.name}: ISR change to {list(isr)} failed: "
                      f"{error}", topic=partition.topic, partition=partition.index, old_isr=list(state.isr),
                      new_isr=list(isr), error=str(error))
            _forget_proposal(partition, isr)
        finally:
            self._in_flight.discard(key)


def _forget_proposal(partition: Partition, isr: tuple[int, ...]) -> None:
    if partition.proposed_isr == isr:
        partition.propose_isr(None)
