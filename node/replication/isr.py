"""ISR upkeep on a leader: shrink the in-sync set when a follower falls behind, expand it when one catches up.

Every ``ISR_CHECK_MS`` the node asks the partitions it leads that are
watched which ISR they want (followers that fetched up to the log end within
``replica_lag_time_max_ms``). Watched are those touched since the last
check (an append, a high-watermark move, a metadata change) and those still
short of a full, caught-up ISR, plus a slice of all led partitions, so that
each is looked at within ``ISR_SWEEP_S``: an idle partition costs nothing
per check, and a follower that stalls on one is still dropped (an idle
partition's ISR matters only once records arrive, which touches it). The
changes one check finds go to the controller together, as AlterPartition
requests of up to ALTER_PARTITION_MAX partitions (Kafka's batching: after a
restart thousands of partitions regain a follower within a moment, and
the controller commits each request as one Raft command), each change
carrying the leader and partition epochs, so a stale leader's proposal is
refused, partition by partition. A controller that does not know
AlterPartition (an older version) gets one AlterIsr per partition. One
proposal per partition is in flight at a time; the partition remembers it
(``proposed_isr``) so the high watermark already counts with the larger of
the two sets while the controller decides (KIP-497). Runs on the asyncio
loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Callable

from rill.client import protocol
from rill.client.errors import RillError, UnsupportedVersionError, error_for_code
from rill.node.network.broker_client import BrokerClient
from rill.node.replication.partition import Partition
from rill.node.replication.replica_manager import ReplicaManager
from rill.node.structured_logging import log_event

log = logging.getLogger(__name__)

ISR_CHECK_MS = 250
ISR_SWEEP_S = 5.0
ALTER_ISR_TIMEOUT_MS = 3_000
ALTER_PARTITION_MAX = 2_000  # partitions per AlterPartition request: one Raft entry of about 100 kB at most
# A busy controller (a cluster restarting) is waited for rather than asked again: a request it has not
# answered yet may still commit, and the same changes sent again would only be refused as stale. One that is
# gone or no longer leads answers at once (not connected, NotController).
ALTER_PARTITION_TIMEOUT_MS = 10_000
FAILURES_NAMED = 5  # partitions a failed request's log line names

Proposal = tuple[Partition, tuple[int, ...]]


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
        proposals: list[Proposal] = []
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
                proposals.append((partition, wanted))
        proposals.sort(key=lambda proposal: (proposal[0].topic, proposal[0].index))
        for first in range(0, len(proposals), ALTER_PARTITION_MAX):
            asyncio.ensure_future(self._alter_many(proposals[first : first + ALTER_PARTITION_MAX]))

    def _sweep_slice(self) -> list[tuple[str, int]]:
        """The next led partitions of the sweep, enough for every one to be seen within ISR_SWEEP_S."""
        if not self._sweep:
            self._sweep = [(p.topic, p.index) for p in self._replicas.leader_partitions()]
            self._per_check = max(1, math.ceil(len(self._sweep) * ISR_CHECK_MS / 1000 / ISR_SWEEP_S))
        taken = self._sweep[-self._per_check:]
        del self._sweep[-self._per_check:]
        return taken

    async def _alter_many(self, proposals: list[Proposal]) -> None:
        """One AlterPartition request for ``proposals``; one AlterIsr each if the controller does not know it."""
        try:
            response = await self._client.request(self._controller_id(), protocol.ALTER_PARTITION,
                                                  _alter_partition_request(self._node_id, proposals),
                                                  ALTER_PARTITION_TIMEOUT_MS)
            if response.error_code:
                raise error_for_code(response.error_code, response.error_message)
        except UnsupportedVersionError:
            await asyncio.gather(*(self._alter(partition, isr) for partition, isr in proposals))
            return
        except RillError as error:
            _log_failure(proposals, error)
            for partition, isr in proposals:
                _forget_proposal(partition, isr)
            return
        finally:
            for partition, _ in proposals:
                self._in_flight.discard((partition.topic, partition.index))
        results = [result for topic in response.topics for result in topic.partitions]
        for number, (partition, isr) in enumerate(proposals):
            if number < len(results) and not results[number].error_code:
                _log_isr_change(partition, isr)
            else:
                log.debug("%s: ISR change to %s refused: %s", partition.name, isr,
                          results[number].error_message if number < len(results) else "no answer")
                _forget_proposal(partition, isr)

    async def _alter(self, partition: Partition, isr: tuple[int, ...]) -> None:
        """One partition's change as AlterIsr, for a controller of an older version."""
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
                _log_isr_change(partition, isr)
        except RillError as error:
            log_event(log, logging.INFO, "isr_change_failed", f"{partition.name}: ISR change to {list(isr)} failed: "
                      f"{error}", topic=partition.topic, partition=partition.index, old_isr=list(state.isr),
                      new_isr=list(isr), error=str(error))
            _forget_proposal(partition, isr)
        finally:
            self._in_flight.discard((partition.topic, partition.index))


def _log_failure(proposals: list[Proposal], error: RillError) -> None:
    """A request that failed as a whole (no controller, a timeout): one log line; the next check asks again."""
    names = [partition.name for partition, _ in proposals]
    more = f" and {len(names) - FAILURES_NAMED} more" if len(names) > FAILURES_NAMED else ""
    log_event(log, logging.INFO, "isr_change_failed", f"ISR changes of {', '.join(names[:FAILURES_NAMED])}{more} "
              f"failed: {error}", partitions=len(names), error=str(error))


def _alter_partition_request(node_id: int, proposals: list[Proposal]) -> protocol.AlterPartitionRequest:
    """The request, topic by topic (adjacent proposals of one topic share an entry; check() sorts them)."""
    topics: list[protocol.AlterPartitionTopic] = []
    for partition, isr in proposals:
        if not topics or topics[-1].topic != partition.topic:
            topics.append(protocol.AlterPartitionTopic(partition.topic, []))
        state = partition.state
        topics[-1].partitions.append(protocol.AlterPartitionItem(partition.index, state.leader_epoch,
                                                                 state.partition_epoch, list(isr)))
    return protocol.AlterPartitionRequest(node_id, topics)


def _log_isr_change(partition: Partition, isr: tuple[int, ...]) -> None:
    state = partition.state
    log_event(log, logging.INFO, "isr_change", f"{partition.name}: ISR {list(state.isr)} -> {list(isr)}",
              topic=partition.topic, partition=partition.index, old_isr=list(state.isr), new_isr=list(isr),
              leader_epoch=state.leader_epoch, source="leader")


def _forget_proposal(partition: Partition, isr: tuple[int, ...]) -> None:
    if partition.proposed_isr == isr:
        partition.propose_isr(None)
