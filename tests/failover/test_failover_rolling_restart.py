"""A rolling restart with SIGTERM under acks="all" load: zero failed writes, nothing acknowledged lost.

Each node in turn: SIGTERM (controlled shutdown moves its leaderships away
first), wait for it to exit, start it, wait until it is back in the ISR of
every partition. The producer keeps its default delivery_timeout_ms.
"""

from __future__ import annotations

import signal

import pytest
from brokers import (
    AckedWriter,
    ClusterProcesses,
    check_acknowledged_records,
    read_partition,
)

PARTITIONS = 3


@pytest.mark.timeout(240)
def test_failover_rolling_restart_under_load(cluster: ClusterProcesses):
    topic = "rolling"
    cluster.create_topic(topic, partitions=PARTITIONS, config={"min.insync.replicas": 2})
    with AckedWriter(cluster.bootstrap, topic, partition=None, acks="all", linger_ms=2) as writer:
        writer.wait_acked(1_000, 60)
        for node_id in cluster.node_ids:
            output_before = len(cluster.output(node_id))
            cluster.kill(node_id, signal.SIGTERM)
            assert cluster[node_id].process.returncode == 0, f"broker {node_id} exits cleanly on SIGTERM"
            assert "leaderships moved" in cluster.output(node_id)[output_before:], (
                f"broker {node_id} handed its leaderships over before stopping")
            writer.wait_more_acked(2_000, 60, f"writes to go on while broker {node_id} is down")
            cluster.start(node_id)
            cluster.wait_full_isr(topic, PARTITIONS, timeout_s=60)
            writer.wait_more_acked(2_000, 60, f"writes to go on after broker {node_id} restarted")
        writer.stop()
    assert not writer.failed, f"{len(writer.failed)} writes failed, first: {writer.failed[:3]}"

    acked_by_partition: dict[int, list[int]] = {partition: [] for partition in range(PARTITIONS)}
    for number in writer.acked:
        acked_by_partition[writer.stored_at[number][0]].append(number)
    for partition in range(PARTITIONS):
        records = read_partition(cluster.bootstrap, topic, partition, min_end_offset=writer.end_offset(partition))
        check_acknowledged_records(records, acked_by_partition[partition], ordered=False,
                                   stored_at=writer.stored_at)
