"""Each node's report on itself for the console (GET /api/node), and gathering every node's report.

A node reports its NODE_STATUS figures, the replicas it hosts (whether it
leads them, log start, high watermark, log end, size on disk) and, per
topic, the records producers appended to it and it handed to consumers
since it started (its BrokerStats counters). All of it is in memory:
building a report reads no disk and sends nothing. The serving node builds its own and asks every
other node over HTTP, concurrently, each within REPORT_TIMEOUT_S; a node
that does not answer in time counts as not answering (the console's health
column), and what only it knows shows as unknown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from rill.node.config import NodeAddress

if TYPE_CHECKING:
    from rill.node.main import Node
    from rill.node.replication.replica_manager import ReplicaManager

log = logging.getLogger(__name__)

REPORT_TIMEOUT_S = 1.5
REPORT_PATH = "/api/node"


class ReplicaReport(msgspec.Struct):
    """One replica on the reporting node; the log's figures are None while it is offline (its log is closed)."""

    topic: str
    partition: int
    leader: bool
    offline: bool
    high_watermark: int
    log_start_offset: int | None = None
    log_end_offset: int | None = None
    size_bytes: int | None = None


class NodeReport(msgspec.Struct):
    """What a node says about itself. ``traffic``: topic -> (records appended, records handed to consumers)."""

    node_id: int
    status: dict[str, Any]
    replicas: list[ReplicaReport]
    traffic: dict[str, tuple[int, int]]


def local_report(node: Node) -> NodeReport:
    """This node's report, from its own memory."""
    status = node.status()
    traffic = {topic: (counts.records_in, counts.records_out) for topic, counts in node.stats.topics.items()}
    return NodeReport(node.config.node_id, {name: getattr(status, name) for name in status.__struct_fields__},
                      _replicas(node.replicas), traffic)


def _replicas(replicas: ReplicaManager) -> list[ReplicaReport]:
    found = []
    for partition in replicas.partitions.values():
        report = ReplicaReport(partition.topic, partition.index, partition.is_leader, partition.offline,
                               partition.high_watermark)
        if not partition.offline:
            log_ = partition.log
            report.log_start_offset, report.log_end_offset = log_.log_start_offset, log_.log_end_offset
            report.size_bytes = log_.size_bytes
        found.append(report)
    return found


async def gather_reports(node: Node) -> dict[int, NodeReport | None]:
    """Every configured node's report by node id; None for a node that did not answer in time."""
    me = node.config.node_id
    peers = [address for address in node.config.nodes if address.node_id != me]
    reports: dict[int, NodeReport | None] = {}
    if peers:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REPORT_TIMEOUT_S)) as session:
            answers = await asyncio.gather(*(_ask(session, peer) for peer in peers))
        reports = {peer.node_id: answer for peer, answer in zip(peers, answers)}
    reports[me] = local_report(node)
    return reports


async def _ask(session: aiohttp.ClientSession, peer: NodeAddress) -> NodeReport | None:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    try:
        async with session.get(f"http://{host}:{peer.http_port}{REPORT_PATH}") as response:
            if response.status != 200:
                return None
            return msgspec.json.decode(await response.read(), type=NodeReport)
    except (TimeoutError, aiohttp.ClientError, msgspec.DecodeError) as error:
        log.debug("node %d did not report: %s", peer.node_id, error)
        return None
