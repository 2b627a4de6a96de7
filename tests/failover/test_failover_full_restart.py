"""Whole-cluster restarts: every node SIGTERMed, then all started again.

The metadata lives only in the Raft journal and its full dump (pysyncobj);
records live in each replica's log. Both must come back: topics, their
partition assignments and configs, and every record at its offset, also
after more than 5,000 metadata changes, when pysyncobj has compacted its log
into the dump file.
"""

from __future__ import annotations

import time

from brokers import ClusterProcesses, read_partition, wait_until
from rill.client import Producer
from rill.client.types import TopicDescription

TOPICS = {  # name: (partitions, replication factor, config)
    "orders": (3, 3, {"min.insync.replicas": 2, "retention.ms": 3_600_000, "segment.bytes": 1_048_576}),
    "payments": (1, 3, {"max.message.bytes": 2_000_000, "retention.bytes": 50_000_000}),
    "audit": (2, 1, {"retention.ms": -1}),
}
RECORDS_PER_TOPIC = 1_500
COMPACTION_ENTRIES = 5_000  # pysyncobj's logCompactionMinEntries
RAFT_DUMP = "raft.dump"


def create_topics(cluster: ClusterProcesses, topics: dict) -> None:
    with cluster.admin() as admin:
        for name, (partitions, replication_factor, config) in topics.items():
            admin.create_topic(name, partitions=partitions, replication_factor=replication_factor, config=config)


def describe_all(cluster: ClusterProcesses, names) -> dict[str, TopicDescription]:
    with cluster.admin(request_timeout_ms=10_000) as admin:
        return {name: admin.describe_topic(name) for name in names}


def produce_keyed(cluster: ClusterProcesses, topic: str, count: int) -> None:
    with Producer(cluster.bootstrap, acks="all", linger_ms=2) as producer:
        futures = [producer.send(topic, b"%s-%d" % (topic.encode(), number), key=b"key-%d" % (number % 97))
                   for number in range(count)]
        producer.flush(60)
    errors = [future.exception() for future in futures if future.exception() is not None]
    assert not errors, f"{len(errors)} writes to {topic} failed: {errors[:3]}"


def contents(cluster: ClusterProcesses, topic: str, partitions: int,
             ends: list[int] | None = None) -> dict[int, list[tuple]]:
    """Every record of the topic, by partition; ``ends``: wait for those end offsets first."""
    return {partition: [(record.offset, record.key, record.value)
                        for record in read_partition(cluster.bootstrap, topic, partition,
                                                     min_end_offset=ends[partition] if ends else 0)]
            for partition in range(partitions)}


def shape(description: TopicDescription) -> tuple:
    """What must survive a restart: the config, and per partition its replicas and high watermark."""
    return description.config, [(p.replicas, p.high_watermark) for p in description.partitions]


def assert_same_topics(cluster: ClusterProcesses, before: dict[str, TopicDescription]) -> dict[str, TopicDescription]:
    """Wait until every topic is described as before the restart (a leader's high watermark may take a
    moment after a leader change); fail with the difference if it never is."""
    latest: dict[str, TopicDescription] = {}

    def same() -> bool:
        latest.update(cluster.try_(lambda: describe_all(cluster, before)) or {})
        return len(latest) == len(before) and all(shape(latest[n]) == shape(before[n]) for n in before)

    try:
        wait_until(same, 30, "the topics to be described as before the restart", interval_s=0.2)
    except AssertionError:
        for name, described in before.items():
            assert name in latest, f"{name}: not described after the restart"
            assert shape(latest[name]) == shape(described), f"{name}: changed across the restart"
        raise
    return latest


def restart_all(cluster: ClusterProcesses) -> None:
    exit_codes = cluster.stop_all()
    assert set(exit_codes.values()) == {0}, f"exit codes after SIGTERM: {exit_codes}\n{cluster.outputs()}"
    cluster.start_all()


def test_failover_full_cluster_restart_keeps_topics_configs_and_data(cluster: ClusterProcesses):
    create_topics(cluster, TOPICS)
    for name, (partitions, _, _) in TOPICS.items():
        cluster.wait_full_isr(name, partitions)
        produce_keyed(cluster, name, RECORDS_PER_TOPIC)
    before = describe_all(cluster, TOPICS)
    data_before = {name: contents(cluster, name, partitions) for name, (partitions, _, _) in TOPICS.items()}
    assert sum(len(records) for parts in data_before.values() for records in parts.values()) == (
        RECORDS_PER_TOPIC * len(TOPICS))

    restart_all(cluster)

    with cluster.admin() as admin:
        assert admin.list_topics() == sorted(TOPICS)
    for name, (partitions, _, config) in TOPICS.items():
        cluster.wait_full_isr(name, partitions, timeout_s=60)
    after = assert_same_topics(cluster, before)
    for name, (_, _, config) in TOPICS.items():
        for key, value in config.items():
            assert after[name].config[key] == str(value), f"{name}: {key} is {after[name].config[key]}"
    for name, (partitions, _, _) in TOPICS.items():
        ends = [p.high_watermark for p in before[name].partitions]
        assert contents(cluster, name, partitions, ends) == data_before[name], f"{name}: records changed"
    produce_keyed(cluster, "orders", 100)  # and the cluster takes writes again


def test_failover_full_restart_after_raft_log_compaction(cluster: ClusterProcesses):
    """More than 5,000 metadata changes (topics created and deleted), so that every node compacts its
    Raft log into the dump file; the whole cluster restarts and the surviving metadata is intact."""
    early = {f"early-{index}": (1 + index % 3, 1 + index % 3, {"retention.ms": 1_000_000 + index})
             for index in range(10)}
    create_topics(cluster, early)
    produce_keyed(cluster, "early-2", 300)
    started = time.monotonic()
    changes = 0
    with cluster.admin(request_timeout_ms=30_000) as admin:
        while changes < COMPACTION_ENTRIES + 200:
            name = f"churn-{changes}"
            admin.create_topic(name, partitions=1, replication_factor=1)
            admin.delete_topic(name)
            changes += 2
    churn_s = time.monotonic() - started
    late = {f"late-{index}": (2, 3, {"min.insync.replicas": 2, "segment.ms": 3_600_000 + index})
            for index in range(5)}
    create_topics(cluster, late)
    kept = {**early, **late}
    print(f"{changes} metadata changes in {churn_s:.1f} s")

    for node_id in cluster.node_ids:  # the compaction is what this test is about: check it happened
        wait_until(lambda: (cluster[node_id].storage_dir / RAFT_DUMP).exists(), 30,
                   f"node {node_id} to write its Raft dump file after {changes} changes")
    for name, (partitions, _, _) in kept.items():
        cluster.wait_full_isr(name, partitions)
    before = describe_all(cluster, kept)
    data_before = contents(cluster, "early-2", 3)

    restart_all(cluster)

    with cluster.admin() as admin:
        assert admin.list_topics() == sorted(kept), "exactly the topics that were not deleted"
    for name, (partitions, _, _) in kept.items():
        cluster.wait_full_isr(name, partitions, timeout_s=60)
    assert_same_topics(cluster, before)
    ends = [p.high_watermark for p in before["early-2"].partitions]
    assert contents(cluster, "early-2", 3, ends) == data_before
    with cluster.admin() as admin:  # and metadata changes go on
        admin.create_topic("after-restart", partitions=1, replication_factor=3)
        admin.delete_topic("late-0")
        expected = sorted({*kept, "after-restart"} - {"late-0"})  # followers apply the Raft entries a moment later
        wait_until(lambda: admin.list_topics() == expected, 10, "every broker to list the changed topics")
