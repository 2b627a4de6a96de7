"""Consumer groups on a real 3-broker cluster: each record to one member, crashes, joins, many groups."""

from __future__ import annotations

from collections import Counter

from brokers import wait_until
from group_members import produce, wait_processed
from rill.client import Consumer
from rill.client.types import TopicPartition

PARTITIONS = 6


def test_three_members_process_every_record_once(group_cluster, consumer_processes, topic_name):
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    produce(group_cluster.bootstrap, topic_name, 0, 3_000)
    members = [consumer_processes(group_cluster.bootstrap, "once", topic_name) for _ in range(3)]
    wait_until(lambda: all(m.owned() for m in members), 60, "every member to own partitions")
    produce(group_cluster.bootstrap, topic_name, 3_000, 3_000)
    wait_processed(members, 6_000, "all 6,000 records to be processed")
    for member in members:
        member.stop()
    processed = Counter(r for m in members for r in m.records())
    assert len(processed) == 6_000
    assert max(processed.values()) == 1, "a record was processed twice although no member crashed"
    owners = [m.owned() for m in members]
    assert sum(len(o) for o in owners) == 0, "every member gave its partitions up on close"


def test_killed_member_partitions_move_and_nothing_is_skipped(group_cluster, consumer_processes, topic_name):
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    produce(group_cluster.bootstrap, topic_name, 0, 1_200)
    members = [consumer_processes(group_cluster.bootstrap, "crash", topic_name) for _ in range(3)]
    wait_until(lambda: sorted(len(m.owned()) for m in members) == [2, 2, 2], 60, "a balanced group")
    wait_processed(members, 1_200, "the first records to be processed")
    victim, survivors = members[0], members[1:]
    lost = victim.owned()
    victim.kill()
    produce(group_cluster.bootstrap, topic_name, 1_200, 1_200)
    wait_until(lambda: set().union(*(s.owned() for s in survivors)) == set(range(PARTITIONS)), 30,
               "the survivors to take over the killed member's partitions")
    wait_processed(members, 2_400, "every record to be processed after the crash")
    for survivor in survivors:
        survivor.stop()
    processed = Counter(r for m in members for r in m.records())
    assert len(processed) == 2_400
    assert set().union(*(m.values() for m in members)) == set(range(2_400)), "no record was skipped"
    twice = {record for record, times in processed.items() if times > 1}
    assert {partition for partition, _ in twice} <= lost, "only the killed member's uncommitted tail repeats"


def test_member_joining_mid_stream_takes_partitions_while_others_keep_theirs(group_cluster, consumer_processes,
                                                                             topic_name):
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    first = [consumer_processes(group_cluster.bootstrap, "join", topic_name) for _ in range(2)]
    wait_until(lambda: sorted(len(m.owned()) for m in first) == [3, 3], 60, "two members with three each")
    produce(group_cluster.bootstrap, topic_name, 0, 1_000)
    wait_processed(first, 1_000, "the first records")
    before = [m.owned() for m in first]
    notes_before = [len(m.lines()) for m in first]
    joiner = consumer_processes(group_cluster.bootstrap, "join", topic_name)
    wait_until(lambda: len(joiner.owned()) == 2, 60, "the new member to get two partitions")
    produce(group_cluster.bootstrap, topic_name, 1_000, 1_000)
    members = first + [joiner]
    wait_processed(members, 2_000, "every record after the join")
    for member, had, seen in zip(first, before, notes_before):
        revoked = {int(n) for parts in member.lines()[seen:] if parts[0] == "V" for n in parts[1:] if n}
        assert len(revoked) == 1 and revoked <= had, "a member gives up only the partition that moves"
        assert member.owned() == had - revoked
    for member in members:
        member.stop()
    processed = Counter(r for m in members for r in m.records())
    assert len(processed) == 2_000 and max(processed.values()) == 1


def test_three_groups_each_see_every_record(group_cluster, topic_name):
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    produce(group_cluster.bootstrap, topic_name, 0, 900)
    seen: dict[str, set[bytes]] = {}
    for group in ("payments", "inventory", "notifications"):
        with Consumer(group_cluster.bootstrap, group_id=f"{topic_name}-{group}", topics=[topic_name],
                      auto_offset_reset="earliest") as consumer:
            values: set[bytes] = set()
            for _ in range(300):
                values.update(record.value for record in consumer.poll(0.2))
                if len(values) >= 900:
                    break
            seen[group] = values
            consumer.commit()
            committed = consumer.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)])
        assert sum(offset for offset in committed.values() if offset) == 900
    assert all(values == {str(n).encode() for n in range(900)} for values in seen.values())


def test_pattern_subscription_follows_new_topics(group_cluster, topic_name):
    with Consumer(group_cluster.bootstrap, group_id=topic_name, pattern=rf"{topic_name}-.*",
                  auto_offset_reset="earliest", heartbeat_interval_ms=200) as consumer:
        for suffix in ("a", "b"):
            group_cluster.create_topic(f"{topic_name}-{suffix}", partitions=2)
            produce(group_cluster.bootstrap, f"{topic_name}-{suffix}", 0, 10)
        topics: set[str] = set()
        for _ in range(300):
            topics.update(record.topic for record in consumer.poll(0.1))
            if len(topics) == 2:
                break
        assert topics == {f"{topic_name}-a", f"{topic_name}-b"}
        assert {tp.topic for tp in consumer.assignment()} == topics
