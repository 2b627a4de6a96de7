"""kill -9 of a partition leader under acks="all" load: no acknowledged record lost, replicas identical."""

from __future__ import annotations

import signal

from brokers import AckedWriter, ClusterProcesses, check_acknowledged_records, read_partition, replica_batches

TOPIC_CONFIG = {"min.insync.replicas": 2}


def compare_replicas(cluster: ClusterProcesses, topic: str, partition: int = 0) -> int:
    """Assert every replica holds the same batches, byte for byte, below the smallest log end; returns it."""
    batches = {node_id: replica_batches(cluster[node_id].partition_dir(topic, partition))
               for node_id in cluster.node_ids}
    ends = {node_id: (found[-1][1] + 1 if found else 0) for node_id, found in batches.items()}
    common_end = min(ends.values())
    below = {node_id: [batch for batch in found if batch[1] < common_end] for node_id, found in batches.items()}
    reference_id = cluster.node_ids[0]
    for node_id, found in below.items():
        assert [b[:2] for b in found] == [b[:2] for b in below[reference_id]], (
            f"replicas {reference_id} and {node_id} have different batch boundaries below offset {common_end}")
        assert b"".join(b[2] for b in found) == b"".join(b[2] for b in below[reference_id]), (
            f"replicas {reference_id} and {node_id} differ in bytes below offset {common_end}")
    return common_end


def test_failover_kill_9_leader_under_load(cluster: ClusterProcesses):
    topic = "kill-leader"
    with cluster.admin() as admin:
        admin.create_topic(topic, partitions=1, replication_factor=3, config=TOPIC_CONFIG)
    before = cluster.wait_full_isr(topic)[0]
    with AckedWriter(cluster.bootstrap, topic, max_in_flight_requests_per_connection=1, retry_backoff_ms=50) as writer:
        writer.wait_acked(2_000, 60)
        leader = cluster.leader_of(topic)
        cluster.kill(leader, signal.SIGKILL)
        writer.wait_more_acked(2_000, 60, "writes to resume after kill -9 of the leader")
        during = cluster.wait_for_leader(topic, not_in=[leader])
        assert during.leader_epoch > before.leader_epoch

        cluster.start(leader)
        cluster.wait_in_isr(topic, leader, timeout_s=60)
        writer.wait_more_acked(1_000, 60, "writes to go on once the killed broker is back in the ISR")
        writer.stop()
    assert not writer.failed, f"{len(writer.failed)} writes failed, first: {writer.failed[:3]}"

    records = read_partition(cluster.bootstrap, topic)
    numbers = check_acknowledged_records(records, writer.acked, stored_at=writer.stored_at)
    assert len(numbers) >= len(writer.acked)

    high_watermark = cluster.partition(topic).high_watermark
    exit_codes = cluster.stop_all()
    assert exit_codes == {1: 0, 2: 0, 3: 0}, f"exit codes after SIGTERM: {exit_codes}"
    common_end = compare_replicas(cluster, topic)
    assert common_end >= high_watermark >= len(records), (
        f"every replica holds the committed records: smallest log end {common_end}, "
        f"high watermark {high_watermark}, records read {len(records)}")
