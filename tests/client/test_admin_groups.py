"""Admin calls for consumer groups against a real broker: list, describe with lag, reset offsets, delete.

Each test has its own topic (3 partitions of RECORDS_PER_PARTITION records,
record i of every partition stamped ``base + i`` seconds) and its own group.
Members are real consumers that commit explicit offsets (auto-commit off),
so every committed offset is one the test chose.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from brokers import poll_until_assigned, wait_until
from rill.client import (
    Admin,
    Consumer,
    GroupDescription,
    GroupSummary,
    Producer,
    TopicPartition,
)
from rill.client.errors import (
    GroupIdNotFoundError,
    GroupNotEmptyError,
    InvalidConfigError,
    InvalidGroupIdError,
    UnknownTopicError,
)

PARTITIONS = 3
RECORDS_PER_PARTITION = 10
SETTLE_TIMEOUT_S = 30.0


@pytest.fixture
def base_time() -> datetime:
    """The timestamp of each partition's first record: a whole second a minute ago (well inside retention)."""
    return datetime.fromtimestamp(int(time.time()) - 60, UTC)


@pytest.fixture
def topic(admin: Admin, shared_broker, topic_name: str, base_time: datetime) -> str:
    admin.create_topic(topic_name, partitions=PARTITIONS)
    base_ms = int(base_time.timestamp() * 1000)
    with Producer(shared_broker.bootstrap) as producer:
        for partition in range(PARTITIONS):
            for index in range(RECORDS_PER_PARTITION):
                producer.send(topic_name, b"%d" % index, partition=partition, timestamp_ms=base_ms + index * 1000)
        producer.flush()
    return topic_name


@pytest.fixture
def group(topic: str) -> str:
    return f"group-{topic}"


@pytest.fixture
def member(shared_broker, group: str, topic: str) -> Iterator[Consumer]:
    """The group's one member, joined and owning every partition; closed (leaving the group) after the test."""
    consumer = Consumer(shared_broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                        enable_auto_commit=False, heartbeat_interval_ms=100, client_id="lag-test-member")
    try:
        poll_until_assigned(consumer, PARTITIONS)
        yield consumer
    finally:
        consumer.close()


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def stable(admin: Admin, consumer: Consumer, group: str) -> GroupDescription:
    """The group's description once it is Stable, polling the member (its heartbeats) meanwhile."""
    def settled() -> GroupDescription | None:
        consumer.poll(0.05)
        description = admin.describe_group(group)
        return description if description.state == "Stable" else None

    return wait_until(settled, SETTLE_TIMEOUT_S, f"group {group} to be Stable")


def committed(admin: Admin, group: str) -> dict[int, int | None]:
    return {p.partition: p.committed_offset for p in admin.describe_group(group).partitions}


def test_describe_shows_the_member_and_lag_per_partition(admin, member, group, topic):
    records = []
    for _ in range(100):
        records += member.poll(0.1)
        if len(records) >= 5:
            break
    assert records
    member.commit(offsets={tp(topic, 0): 5, tp(topic, 1): 2})

    description = stable(admin, member, group)
    assert (description.group_id, description.assignor) == (group, "sticky")
    assert description.group_epoch >= 1
    [seen] = description.members
    assert seen.client_id == "lag-test-member"
    assert seen.member_epoch == description.group_epoch
    assert (seen.subscribed_topics, seen.subscribed_pattern) == ([topic], "")
    assert seen.assignment == [tp(topic, p) for p in range(PARTITIONS)]
    assert [(p.topic, p.partition, p.committed_offset, p.log_end_offset, p.lag, p.owner)
            for p in description.partitions] == [
        (topic, 0, 5, RECORDS_PER_PARTITION, RECORDS_PER_PARTITION - 5, seen.member_id),
        (topic, 1, 2, RECORDS_PER_PARTITION, RECORDS_PER_PARTITION - 2, seen.member_id),
        (topic, 2, None, RECORDS_PER_PARTITION, None, seen.member_id),
    ]
    assert [p.lag_seconds > 50 for p in description.partitions] == [True, True, False]  # stamped a minute ago
    assert description.total_lag == (RECORDS_PER_PARTITION - 5) + (RECORDS_PER_PARTITION - 2)
    assert GroupSummary(group, "Stable", 1) in admin.list_groups()


def test_list_groups_is_sorted_and_counts_members(admin, member, group, topic):
    admin.reset_offsets(f"{group}-a-second-group", topic, to_earliest=True)
    stable(admin, member, group)
    groups = admin.list_groups()
    assert [g.group_id for g in groups] == sorted(g.group_id for g in groups)
    assert GroupSummary(group, "Stable", 1) in groups
    assert GroupSummary(f"{group}-a-second-group", "Empty", 0) in groups


def test_reset_and_delete_are_refused_while_the_group_has_members(admin, member, group, topic):
    member.commit(offsets={tp(topic, 0): 3})
    with pytest.raises(GroupNotEmptyError, match="active members"):
        admin.reset_offsets(group, topic, to_latest=True)
    with pytest.raises(GroupNotEmptyError):
        admin.delete_group(group)
    assert committed(admin, group) == {0: 3, 1: None, 2: None}
    assert len(admin.describe_group(group).members) == 1


def test_reset_after_the_member_left(admin, member, group, topic):
    member.commit(offsets={tp(topic, 0): 5, tp(topic, 1): 2})
    member.close()
    description = admin.describe_group(group)
    assert (description.state, description.members) == ("Empty", [])

    everywhere = {tp(topic, p): 0 for p in range(PARTITIONS)}
    assert admin.reset_offsets(group, topic, to_earliest=True) == everywhere
    described = admin.describe_group(group)
    assert [(p.committed_offset, p.lag) for p in described.partitions] == [(0, RECORDS_PER_PARTITION)] * PARTITIONS
    assert described.total_lag == PARTITIONS * RECORDS_PER_PARTITION

    ends = {tp(topic, p): RECORDS_PER_PARTITION for p in range(PARTITIONS)}
    assert admin.reset_offsets(group, topic, to_latest=True) == ends
    assert admin.describe_group(group).total_lag == 0

    assert admin.reset_offsets(group, topic, to_offset=4, partitions=[1]) == {tp(topic, 1): 4}
    assert committed(admin, group) == {0: RECORDS_PER_PARTITION, 1: 4, 2: RECORDS_PER_PARTITION}
    assert admin.describe_group(group).total_lag == RECORDS_PER_PARTITION - 4


def test_reset_to_an_offset_is_clamped_into_the_log(admin, group, topic):
    assert admin.reset_offsets(group, topic, to_offset=99, partitions=[0, 2]) == {
        tp(topic, 0): RECORDS_PER_PARTITION, tp(topic, 2): RECORDS_PER_PARTITION}
    assert admin.reset_offsets(group, topic, to_offset=-7, partitions=[2]) == {tp(topic, 2): 0}
    assert committed(admin, group) == {0: RECORDS_PER_PARTITION, 2: 0}


def test_reset_to_an_offset_below_the_log_start_takes_the_log_start(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, config={"segment.bytes": 2_000, "retention.bytes": 4_000})
    with Producer(shared_broker.bootstrap, batch_size=500, linger_ms=0, compression="none") as producer:
        for index in range(300):
            producer.send(topic_name, b"%05d" % index + b"." * 50)
    start = wait_until(lambda: admin.describe_topic(topic_name).partitions[0].log_start_offset or None, 30,
                       "the retention check to delete segments")
    assert admin.reset_offsets("clamped-group-" + topic_name, topic_name, to_offset=1) == {tp(topic_name, 0): start}


def test_reset_to_a_datetime(admin, group, topic, base_time):
    at_offset_4 = {tp(topic, p): 4 for p in range(PARTITIONS)}
    assert admin.reset_offsets(group, topic, to_datetime=base_time + timedelta(seconds=3.5)) == at_offset_4
    naive_utc = (base_time + timedelta(seconds=4)).replace(tzinfo=None)
    assert admin.reset_offsets(group, topic, to_datetime=naive_utc) == at_offset_4
    zulu = (base_time + timedelta(seconds=6)).replace(tzinfo=None).isoformat() + "Z"
    assert admin.reset_offsets(group, topic, to_datetime=zulu, partitions=[0]) == {tp(topic, 0): 6}
    plus_two = (base_time + timedelta(hours=2, seconds=7)).replace(tzinfo=None).isoformat() + "+02:00"
    assert admin.reset_offsets(group, topic, to_datetime=plus_two, partitions=[1]) == {tp(topic, 1): 7}
    assert admin.reset_offsets(group, topic, to_datetime=base_time - timedelta(days=1)) == {
        tp(topic, p): 0 for p in range(PARTITIONS)}
    assert admin.reset_offsets(group, topic, to_datetime=datetime.now(UTC) + timedelta(days=1)) == {
        tp(topic, p): RECORDS_PER_PARTITION for p in range(PARTITIONS)}


def test_a_new_member_starts_at_the_reset_offsets(admin, shared_broker, group, topic):
    admin.reset_offsets(group, topic, to_offset=8)
    with Consumer(shared_broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                  enable_auto_commit=False) as consumer:
        records = []
        for _ in range(200):
            records += consumer.poll(0.1)
            if len(records) >= PARTITIONS * 2:
                break
    assert sorted((r.partition, r.offset) for r in records) == [(p, o) for p in range(PARTITIONS) for o in (8, 9)]


def test_delete_group(admin, member, group, topic):
    member.commit(offsets={tp(topic, 2): 1})
    with pytest.raises(GroupNotEmptyError):
        admin.delete_group(group)
    member.close()
    admin.delete_group(group)
    with pytest.raises(GroupIdNotFoundError):
        admin.describe_group(group)
    assert group not in [g.group_id for g in admin.list_groups()]
    with pytest.raises(GroupIdNotFoundError):
        admin.delete_group(group)


def test_unknown_and_invalid_groups(admin):
    with pytest.raises(GroupIdNotFoundError):
        admin.describe_group("no-such-group-anywhere")
    with pytest.raises(GroupIdNotFoundError):
        admin.delete_group("no-such-group-anywhere")
    with pytest.raises(InvalidGroupIdError):
        admin.describe_group("")
    with pytest.raises(InvalidGroupIdError):
        admin.reset_offsets("", "any-topic", to_earliest=True)


@pytest.mark.parametrize("targets", [
    {},
    {"to_earliest": True, "to_latest": True},
    {"to_offset": 0, "to_datetime": "2024-01-01T00:00:00"},
    {"to_latest": True, "to_offset": 3},
    {"to_offset": "3"},
    {"to_datetime": "yesterday"},
])
def test_reset_needs_exactly_one_valid_target(admin, group, topic, targets):
    with pytest.raises(InvalidConfigError):
        admin.reset_offsets(group, topic, **targets)
    with pytest.raises(GroupIdNotFoundError):
        admin.describe_group(group)


def test_reset_of_an_unknown_topic_or_partition(admin, group, topic):
    with pytest.raises(UnknownTopicError):
        admin.reset_offsets(group, f"{topic}-missing", to_earliest=True)
    with pytest.raises(UnknownTopicError, match="0..2"):
        admin.reset_offsets(group, topic, to_earliest=True, partitions=[1, PARTITIONS])
    with pytest.raises(GroupIdNotFoundError):
        admin.describe_group(group)
