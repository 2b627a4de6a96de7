"""The Rill clusters a bench run starts, and what it asks them: leaders, and each broker's event-loop lag.

Each cluster is fresh, on free loopback ports in a temporary folder, and is
stopped by pid afterwards. After each run the bench asks every broker for its
event-loop lag (NodeStatus: how late the broker's asyncio loop ran what was
due, p50/p99/max over the last minute): heartbeats and the session timeout
share that loop with request handling.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rill.client import Admin
from rill.cluster import launcher
from rill.cluster.layout import ClusterLayout, free_base_port

LagRow = tuple[str, str, str, str, str]  # run, node, p50, p99, max (ms)


@contextmanager
def running_cluster(folder: Path, node_count: int) -> Iterator[ClusterLayout]:
    """A fresh local cluster on free ports, stopped by pid afterwards."""
    layout = ClusterLayout(folder, node_count, free_base_port(node_count))
    launcher.start_nodes(layout, list(layout.node_ids))
    try:
        yield layout
    finally:
        launcher.stop_nodes(layout, list(layout.node_ids))


def create_topic(layout: ClusterLayout, topic: str, partitions: int = 1, replication_factor: int = 1) -> str:
    """Create ``topic`` (min.insync.replicas 2 when replicated); the client address of its partition 0's leader."""
    config = {"min.insync.replicas": "2"} if replication_factor > 1 else {}
    with Admin(layout.bootstrap) as admin:
        admin.create_topic(topic, partitions=partitions, replication_factor=replication_factor, config=config)
        leader = admin.describe_topic(topic).partitions[0].leader
    return launcher.node_address(layout, leader)


def note_loop_lag(layout: ClusterLayout, run: str, lags: list[LagRow]) -> None:
    """Add each broker's event-loop lag as it reports it now (over its last minute) to ``lags``."""
    for status in launcher.node_statuses(layout):
        report = status.report
        if report is None:
            lags.append((run, f"node {status.node_id}", "-", "-", "-"))
        else:
            lags.append((run, f"node {status.node_id}", f"{report.loop_lag_ms_p50:.1f}",
                         f"{report.loop_lag_ms_p99:.1f}", f"{report.loop_lag_ms_max:.1f}"))
