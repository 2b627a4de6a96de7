"""Joining a group through ``subscribe``, and rebalance callbacks that raise, on a real 3-broker cluster.

``Consumer(bootstrap, group_id=...)`` followed by ``subscribe(topics)`` or
``subscribe(pattern=...)`` is a group member exactly like one given its
topics at construction: members split the partitions and their commits are
accepted. A member whose on_assign/on_revoke raise still gives partitions
up and takes them (the exception is logged), so the group is not wedged.
"""

from __future__ import annotations

import logging
from collections import Counter

from brokers import wait_until
from group_members import produce
from rill.client import Consumer
from rill.client.types import TopicPartition

PARTITIONS = 6
MEMBER_SETTINGS = {"auto_offset_reset": "earliest", "heartbeat_interval_ms": 200, "session_timeout_ms": 3000}


def poll_each(consumers: list[Consumer], seen: list) -> None:
    for consumer in consumers:
        seen += consumer.poll(0.05)


def split_between(consumers: list[Consumer], seen: list, timeout_s: float = 60.0) -> None:
    """Poll every member until each owns a share and together they own every partition once."""
    def split() -> bool:
        poll_each(consumers, seen)
        owned = [consumer.assignment() for consumer in consumers]
        return all(owned) and sum(map(len, owned)) == PARTITIONS and len(set().union(*owned)) == PARTITIONS
    wait_until(split, timeout_s, "the members to split the partitions")


def read_values(consumers: list[Consumer], seen: list, count: int, timeout_s: float = 60.0) -> None:
    wait_until(lambda: poll_each(consumers, seen) or len({r.value for r in seen}) >= count, timeout_s,
               f"{count} distinct records")


def test_members_that_subscribe_after_construction_split_the_partitions_and_commit(group_cluster, topic_name):
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    members = [Consumer(group_cluster.bootstrap, group_id=topic_name, auto_commit_interval_ms=100, **MEMBER_SETTINGS)
               for _ in range(2)]
    try:
        for member in members:
            member.subscribe([topic_name])
        seen: list = []
        split_between(members, seen)
        with group_cluster.admin() as admin:
            described = admin.describe_group(topic_name)
        assert len(described.members) == 2
        assert all(member.subscribed_topics == [topic_name] for member in described.members)
        produce(group_cluster.bootstrap, topic_name, 0, 600)
        read_values(members, seen, 600)
        assert max(Counter(record.value for record in seen).values()) == 1, "each record went to one member"
        partitions = [TopicPartition(topic_name, p) for p in range(PARTITIONS)]
        wait_until(lambda: poll_each(members, seen) or sum(filter(None, members[0].committed(partitions).values()))
                   == 600, 30, "the auto-commits of both members")
        for member in members:
            member.commit()  # and commits by hand are accepted
        assert all(member.assignment().isdisjoint(other.assignment())
                   for member in members for other in members if member is not other)
    finally:
        for member in members:
            member.close()


def test_pattern_subscription_through_subscribe(group_cluster, topic_name):
    with Consumer(group_cluster.bootstrap, group_id=topic_name, **MEMBER_SETTINGS) as member:
        member.subscribe(pattern=rf"{topic_name}-.*")
        for suffix in ("a", "b"):
            group_cluster.create_topic(f"{topic_name}-{suffix}", partitions=2)
            produce(group_cluster.bootstrap, f"{topic_name}-{suffix}", 0, 10)
        seen: list = []
        wait_until(lambda: poll_each([member], seen) or len(seen) >= 20, 60, "the records of both topics")
        assert {record.topic for record in seen} == {f"{topic_name}-a", f"{topic_name}-b"}
        with group_cluster.admin() as admin:
            [described] = admin.describe_group(topic_name).members
        assert described.subscribed_pattern == rf"{topic_name}-.*"


def test_subscribing_again_moves_the_member_to_the_new_topics(group_cluster, topic_name):
    first, second = f"{topic_name}-first", f"{topic_name}-second"
    group_cluster.create_topic(first, partitions=2)
    group_cluster.create_topic(second, partitions=3)
    with Consumer(group_cluster.bootstrap, group_id=topic_name, **MEMBER_SETTINGS) as member:
        member.subscribe([first])
        wait_until(lambda: member.poll(0.05) is not None and {tp.topic for tp in member.assignment()} == {first}
                   and len(member.assignment()) == 2, 60, f"the partitions of {first}")
        member.subscribe([second])
        wait_until(lambda: member.poll(0.05) is not None and {tp.topic for tp in member.assignment()} == {second}
                   and len(member.assignment()) == 3, 60, f"the partitions of {second} only")
        with group_cluster.admin() as admin:
            [described] = admin.describe_group(topic_name).members
        assert described.subscribed_topics == [second]
        assert sorted(described.assignment) == [TopicPartition(second, p) for p in range(3)]


def test_callbacks_that_raise_do_not_wedge_the_group(group_cluster, topic_name, caplog):
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    calls: list[tuple[str, int]] = []

    def failing(kind: str):
        def callback(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            calls.append((kind, len(partitions)))
            raise RuntimeError(f"the application's {kind} failed")
        return callback

    caplog.set_level(logging.ERROR, logger="rill.client.rebalance")
    clumsy = Consumer(group_cluster.bootstrap, group_id=topic_name, topics=[topic_name], on_assign=failing("assign"),
                      on_revoke=failing("revoke"), **MEMBER_SETTINGS)
    other = Consumer(group_cluster.bootstrap, group_id=topic_name, **MEMBER_SETTINGS)
    try:
        seen: list = []
        wait_until(lambda: poll_each([clumsy], seen) or len(clumsy.assignment()) == PARTITIONS, 60,
                   "the first member to own every partition")
        other.subscribe([topic_name])
        split_between([clumsy, other], seen)
        assert ("assign", PARTITIONS) in calls and any(kind == "revoke" for kind, _ in calls)
        produce(group_cluster.bootstrap, topic_name, 0, 300)
        read_values([clumsy, other], seen, 300)
        assert {record.partition for record in seen} == set(range(PARTITIONS))
        clumsy.close()  # on_revoke raises once more; it still commits and leaves
        wait_until(lambda: other.poll(0.05) is not None and len(other.assignment()) == PARTITIONS, 60,
                   "the other member to take every partition")
    finally:
        clumsy.close()
        other.close()
    assert "callback raised" in caplog.text and "the application's revoke failed" in caplog.text
