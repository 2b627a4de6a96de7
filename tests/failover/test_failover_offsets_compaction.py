"""__consumer_offsets is compacted: many commits leave a small log, a replica that was away catches up across
the gaps compaction left, and a new coordinator replays the compacted log to the latest commits."""

from __future__ import annotations

import pytest
from brokers import poll_until_assigned, wait_until
from rill.client import Consumer, Producer
from rill.client.types import TopicPartition
from rill.node.coordinator.offset_records import OFFSETS_TOPIC, partition_for

GROUP = "compacted"
TOPIC = "events"
COMMITS = 1_500


def cleaned_offset(cluster, node_id: int, partition: int) -> int:
    checkpoint = cluster[node_id].partition_dir(OFFSETS_TOPIC, partition) / "cleaner-offset-checkpoint"
    return int(checkpoint.read_text().strip() or 0) if checkpoint.exists() else 0


def log_bytes(cluster, node_id: int, partition: int) -> int:
    return sum(f.stat().st_size for f in cluster[node_id].partition_dir(OFFSETS_TOPIC, partition).glob("*.log"))


@pytest.mark.cluster_settings(offsets_topic_segment_bytes=4096)
def test_offsets_compacted_and_replayed_after_a_replica_missed_them(cluster):
    cluster.create_topic(TOPIC, partitions=2)
    with Producer(cluster.bootstrap) as producer:
        for number in range(COMMITS + 10):
            producer.send(TOPIC, b"%d" % number, partition=number % 2)
    partitions = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
    with Consumer(cluster.bootstrap, group_id=GROUP, topics=[TOPIC], auto_offset_reset="earliest",
                  session_timeout_ms=3000, heartbeat_interval_ms=200) as consumer:
        poll_until_assigned(consumer, 2)
        consumer.commit(offsets={tp: 0 for tp in partitions})
        index = partition_for(GROUP)
        offsets_partition = cluster.wait_full_isr(OFFSETS_TOPIC, 16)[index]
        coordinator = offsets_partition.leader
        away = next(node for node in offsets_partition.replicas if node != coordinator)
        cluster.kill(away)

        for number in range(1, COMMITS + 1):
            consumer.commit(offsets={tp: number // 2 for tp in partitions})
        wait_until(lambda: cleaned_offset(cluster, coordinator, index) > 0, 60, "the coordinator to compact")
        assert log_bytes(cluster, coordinator, index) < COMMITS * 40, "superseded commits were cleaned away"

        cluster.start(away)
        cluster.wait_in_isr(OFFSETS_TOPIC, away, index, timeout_s=60)
        cluster.kill(coordinator)
        cluster.wait_for_leader(OFFSETS_TOPIC, index, not_in=[coordinator])
        latest = {tp: COMMITS // 2 for tp in partitions}
        assert consumer.committed(partitions) == latest, "the new coordinator replayed the compacted log"
