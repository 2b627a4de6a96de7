"""A topic deleted and created again under the same name while one of its replicas is away.

The broker that was away must end with the new topic's records only: the
old topic's log is gone with the old topic, even though the new one has the
same name, the same partition numbers and (again) leader epoch 0. Two ways
back: a restart after kill -9 (it replays its Raft journal, then the
leader's entries), and a pause during which the others write more than
5,000 metadata entries, so that it catches up through a Raft snapshot
(pysyncobj's InstallSnapshot) instead of the commands.

The brokers run with session_timeout_ms = 30 s here, so that the broker
that is away stays registered and is placed as a replica of the re-created
topic (as when it comes back within the session timeout). It is away
stopped (SIGSTOP), and killed only after the re-creation: a killed broker's
closed port gets it fenced at once (node/metadata/liveness.py).
"""

from __future__ import annotations

import signal

import pytest
import zmq
from brokers import ClusterProcesses, read_partition, replica_batches, wait_until
from rill.client import Producer, protocol
from rill.client.batch import decode_batch
from rill.client.network import NetworkClient

COMPACTION_ENTRIES = 5_000  # pysyncobj's logCompactionMinEntries
RECORDS_PER_BATCH = 100


def produce_batches(bootstrap: str, topic: str, prefix: bytes, count: int, acks: int | str = "all") -> None:
    """``count`` records in batches of RECORDS_PER_BATCH (a flush after each), so batches end at offset 100."""
    with Producer(bootstrap, acks=acks) as producer:
        futures = []
        for number in range(count):
            futures.append(producer.send(topic, b"%s-%d" % (prefix, number)))
            if number % RECORDS_PER_BATCH == RECORDS_PER_BATCH - 1:
                producer.flush(30)
        producer.flush(30)
    assert all(future.exception() is None for future in futures)


class ControllerRequests:
    """Topic changes sent straight to the controller (the Admin client would also ask the paused broker
    for metadata, and wait for it)."""

    def __init__(self, address: str):
        self.address = address
        self._context = zmq.Context()
        self._network = NetworkClient(self._context, "failover-test")

    def __enter__(self) -> "ControllerRequests":
        return self

    def __exit__(self, *exc_info) -> None:
        self._network.close()
        self._context.term()

    def _ask(self, api: protocol.Api, body) -> None:
        result = self._network.request(self.address, api, body, 30_000)
        assert result.error_code == 0, f"{api.name}: {result.error_message}"

    def create(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        self._ask(protocol.CREATE_TOPIC, protocol.CreateTopicRequest(name, partitions, replication_factor, {}, 30_000))

    def delete(self, name: str) -> None:
        self._ask(protocol.DELETE_TOPIC, protocol.DeleteTopicRequest(name, 30_000))


def values_of(cluster: ClusterProcesses, node_id: int, topic: str) -> list[bytes]:
    return [record.value for _, _, data in replica_batches(cluster[node_id].partition_dir(topic, 0))
            for record in decode_batch(data, topic, 0, 0)]


def assert_only_new_records(cluster: ClusterProcesses, topic: str, high_watermark: int, records: list) -> None:
    """On every (stopped) broker, the re-created topic's replica holds the new records below the high
    watermark, none of the deleted topic's."""
    for node_id in cluster.node_ids:
        values = values_of(cluster, node_id, topic)[:high_watermark]
        old = [value for value in values if value.startswith(b"old")]
        assert not old, (f"broker {node_id}'s replica of the re-created {topic!r} holds {len(old)} records of the "
                         f"deleted one below the high watermark {high_watermark}, e.g. {old[:3]}")
        assert values == [record.value for record in records], f"broker {node_id}'s replica differs"


def old_topic_and_a_plain_follower(cluster: ClusterProcesses, topic: str) -> tuple[int, int, list[int]]:
    """Create the topic with "old" records; (a follower that is not the controller, the controller, the others)."""
    state = cluster.create_topic(topic)[0]
    produce_batches(cluster.bootstrap, topic, b"old", 5 * RECORDS_PER_BATCH)
    controller = cluster.controller_id()
    follower = next(node_id for node_id in state.replicas if node_id not in (state.leader, controller))
    return follower, controller, [node_id for node_id in cluster.node_ids if node_id != follower]


@pytest.mark.cluster_settings(session_timeout_ms=30_000)
def test_failover_restarted_broker_drops_the_deleted_topic_of_the_same_name(cluster: ClusterProcesses):
    topic = "reborn-after-restart"
    away, _, running = old_topic_and_a_plain_follower(cluster, topic)

    cluster.kill(away, signal.SIGSTOP)
    try:
        with cluster.admin(running) as admin:
            admin.delete_topic(topic)
            admin.create_topic(topic, partitions=1, replication_factor=3)
            described = wait_until(lambda: cluster.try_(lambda: admin.describe_topic(topic)), 10,
                                   "the re-created topic to show in the metadata")  # followers apply it a moment later
            assert away in described.partitions[0].replicas, "the stopped broker is a replica"
        produce_batches(cluster.bootstrap_of(running), topic, b"new", RECORDS_PER_BATCH, acks=1)
    finally:
        cluster.kill(away, signal.SIGKILL)
    cluster.start(away)

    info = cluster.wait_for_partition(topic, lambda p: sorted(p.isr) == [1, 2, 3] and p.high_watermark >= 100,
                                      "every replica in sync", timeout_s=60)
    records = read_partition(cluster.bootstrap, topic, min_end_offset=info.high_watermark)
    assert [record.value for record in records] == [b"new-%d" % n for n in range(RECORDS_PER_BATCH)]
    cluster.stop_all()
    assert_only_new_records(cluster, topic, info.high_watermark, records)


@pytest.mark.cluster_settings(session_timeout_ms=30_000)
@pytest.mark.timeout(180)
def test_failover_paused_broker_catches_up_through_a_raft_snapshot(cluster: ClusterProcesses):
    topic = "reborn-after-snapshot"
    paused, controller, running = old_topic_and_a_plain_follower(cluster, topic)

    cluster.kill(paused, signal.SIGSTOP)
    try:
        with ControllerRequests(cluster[controller].bootstrap) as requests:
            requests.delete(topic)
            for number in range(COMPACTION_ENTRIES // 2 + 50):
                requests.create(f"churn-{number}")
                requests.delete(f"churn-{number}")
            requests.create(topic, replication_factor=3)
        for node_id in running:
            wait_until(lambda: (cluster[node_id].storage_dir / "raft.dump").exists(), 30,
                       f"broker {node_id} to compact its Raft log into the dump")
        assert paused in cluster.partition(topic, node_ids=running).replicas, "the paused broker is a replica"
        produce_batches(cluster.bootstrap_of(running), topic, b"new", RECORDS_PER_BATCH, acks=1)
    finally:
        cluster.kill(paused, signal.SIGCONT)

    wait_until(lambda: (cluster[paused].storage_dir / "raft.dump").exists(), 30,
               f"broker {paused} to install the Raft snapshot")
    info = cluster.wait_for_partition(topic, lambda p: sorted(p.isr) == [1, 2, 3] and p.high_watermark >= 100,
                                      "every replica in sync", timeout_s=60)
    records = read_partition(cluster.bootstrap, topic, min_end_offset=info.high_watermark)
    assert [record.value for record in records] == [b"new-%d" % n for n in range(RECORDS_PER_BATCH)]

    cluster.stop_all()
    assert_only_new_records(cluster, topic, info.high_watermark, records)
