"""kill -9 of a group's coordinator: the group goes on at the new coordinator and its committed offsets survive."""

from __future__ import annotations

import zmq
from rill.client import Consumer, Producer, protocol
from rill.client.network import NetworkClient
from rill.client.types import TopicPartition

TOPIC = "orders"
GROUP = "payments"
PARTITIONS = 3


def produce(bootstrap: str, first: int, count: int) -> None:
    with Producer(bootstrap, acks="all") as producer:
        for number in range(first, first + count):
            producer.send(TOPIC, b"%d" % number, key=b"%d" % number)
        producer.flush()


def consume(consumers: list[Consumer], seen: set[bytes], count: int) -> None:
    """Poll every member in turn until ``count`` distinct values were seen (bounded)."""
    for _ in range(1_500):
        for consumer in consumers:
            seen.update(record.value for record in consumer.poll(0.02))
        if len(seen) >= count:
            return
    raise AssertionError(f"the group processed {len(seen)} of {count} records")


def coordinator_of(bootstrap: str, group: str) -> int:
    context = zmq.Context()
    network = NetworkClient(context, "test")
    try:
        for address in bootstrap.split(","):
            answer = network.request(address, protocol.FIND_COORDINATOR, protocol.FindCoordinatorRequest(group), 5_000)
            if answer.error_code == 0:
                return answer.node_id
        raise AssertionError("no broker named the coordinator")
    finally:
        network.close()
        context.term()


def test_group_survives_kill_9_of_its_coordinator(cluster):
    cluster.create_topic(TOPIC, partitions=PARTITIONS, config={"min.insync.replicas": 2})
    produce(cluster.bootstrap, 0, 600)
    partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    members = [Consumer(cluster.bootstrap, group_id=GROUP, topics=[TOPIC], auto_offset_reset="earliest",
                        session_timeout_ms=2000, heartbeat_interval_ms=200) for _ in range(2)]
    try:
        seen: set[bytes] = set()
        consume(members, seen, 600)
        for member in members:
            member.commit()
        committed = members[0].committed(partitions)
        assert sum(committed.values()) == 600

        cluster.kill(coordinator_of(cluster.bootstrap, GROUP))
        assert members[1].committed(partitions) == committed, "the new coordinator replayed every commit"

        produce(cluster.bootstrap, 600, 600)
        consume(members, seen, 1_200)
        assert seen == {b"%d" % n for n in range(1_200)}
        for member in members:
            member.commit()
        assert sum(members[0].committed(partitions).values()) == 1_200
        assert {tp for member in members for tp in member.assignment()} == set(partitions)
    finally:
        for member in members:
            member.close()
