"""Bad input to consumer groups: each gets a clear typed error and the group and its offsets stay intact."""

from __future__ import annotations

from typing import Iterator

import pytest
import zmq
from brokers import poll_until_assigned, wait_until
from rill.client import Consumer, Producer, protocol
from rill.client.errors import (
    FencedMemberEpochError,
    GroupIdNotFoundError,
    GroupNotEmptyError,
    InvalidConfigError,
    InvalidGroupIdError,
    InvalidTopicError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    PartitionNotOwnedError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    error_for_code,
)
from rill.client.network import NetworkClient
from rill.client.types import TopicPartition


@pytest.fixture
def network() -> Iterator[NetworkClient]:
    context = zmq.Context()
    client = NetworkClient(context, "group-bad-input-test")
    yield client
    client.close()
    context.term()


@pytest.fixture
def topic(admin, shared_broker, topic_name) -> str:
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap) as producer:
        for number in range(20):
            producer.send(topic_name, b"%d" % number, partition=number % 2)
    return topic_name


def group_consumer(bootstrap: str, group: str, topic: str, **settings) -> Consumer:
    return Consumer(bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                    heartbeat_interval_ms=100, session_timeout_ms=3000, **settings)


def heartbeat(network, bootstrap, group, topic, member_id="", epoch=0) -> protocol.ConsumerGroupHeartbeatResponse:
    request = protocol.ConsumerGroupHeartbeatRequest(group, member_id, epoch, "test", [topic], "", "sticky", 5000, [])
    return network.request(bootstrap, protocol.CONSUMER_GROUP_HEARTBEAT, request, 10_000)


def commit(network, bootstrap, group, member_id, epoch, topic, offset=1) -> protocol.OffsetCommitResponse:
    request = protocol.OffsetCommitRequest(group, member_id, epoch, [
        protocol.OffsetCommitTopic(topic, [protocol.OffsetCommitPartition(0, offset, "")])])
    return network.request(bootstrap, protocol.OFFSET_COMMIT, request, 10_000)


def test_commit_of_a_partition_the_member_does_not_own(shared_broker, topic, topic_name):
    with group_consumer(shared_broker.bootstrap, topic_name, topic) as first:
        poll_until_assigned(first, 2)
        first.commit(offsets={TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 4})
        with group_consumer(shared_broker.bootstrap, topic_name, topic) as second:
            for _ in range(300):
                first.poll(0.05)
                second.poll(0.05)
                if len(first.assignment()) == len(second.assignment()) == 1:
                    break
            theirs = next(iter(second.assignment()))
            before = first.committed([theirs])
            with pytest.raises(PartitionNotOwnedError):
                first.commit(offsets={theirs: 9})
            assert first.committed([theirs]) == before


def test_commit_beyond_the_log_end_and_negative(shared_broker, topic, topic_name):
    partition = TopicPartition(topic, 0)
    with group_consumer(shared_broker.bootstrap, topic_name, topic) as consumer:
        poll_until_assigned(consumer, 2)
        consumer.commit(offsets={partition: 5})
        with pytest.raises(OffsetOutOfRangeError, match="beyond the log end"):
            consumer.commit(offsets={partition: 11})
        with pytest.raises(OffsetOutOfRangeError):
            consumer.commit(offsets={partition: -3})
        with pytest.raises(OffsetOutOfRangeError):
            consumer.seek(partition, 11)
        assert consumer.committed([partition]) == {partition: 5}
        consumer.commit(offsets={partition: 10})  # the log end itself is a valid commit
        assert consumer.committed([partition]) == {partition: 10}


def test_reset_error_without_a_committed_offset(shared_broker, topic, topic_name):
    with Consumer(shared_broker.bootstrap, group_id=topic_name, topics=[topic], auto_offset_reset="error",
                  heartbeat_interval_ms=100) as consumer:
        with pytest.raises(NoOffsetForPartitionError):
            for _ in range(100):
                consumer.poll(0.05)
        consumer.seek(TopicPartition(topic, 0), 2)  # the way out: choose positions
        consumer.seek(TopicPartition(topic, 1), 0)
        values = []
        for _ in range(100):
            values += [record.value for record in consumer.poll(0.05)]
            if len(values) == 18:
                break
        assert sorted(values) == sorted(b"%d" % n for n in range(20) if n not in (0, 2))


def test_stale_and_fenced_member_epochs_and_unknown_members(shared_broker, network, topic, topic_name):
    bootstrap = shared_broker.bootstrap
    wait_until(lambda: network.request(bootstrap, protocol.FIND_COORDINATOR,
                                       protocol.FindCoordinatorRequest(topic_name), 5_000).error_code == 0,
               30, "a coordinator")
    member = heartbeat(network, bootstrap, topic_name, topic)
    assert member.error_code == 0 and member.member_epoch > 0
    epochs = [member.member_epoch]
    for _ in range(2):  # others join: the group epoch moves, and with it this member's epoch
        assert heartbeat(network, bootstrap, topic_name, topic).error_code == 0
        answer = heartbeat(network, bootstrap, topic_name, topic, member.member_id, epochs[-1])
        assert answer.error_code == 0
        epochs.append(answer.member_epoch)
    assert epochs[0] < epochs[1] < epochs[2]
    stale = commit(network, bootstrap, topic_name, member.member_id, epochs[0], topic)
    assert isinstance(error_for_code(stale.error_code, stale.error_message), StaleMemberEpochError)
    fenced = heartbeat(network, bootstrap, topic_name, topic, member.member_id, epochs[0])
    assert isinstance(error_for_code(fenced.error_code), FencedMemberEpochError)
    unknown = commit(network, bootstrap, topic_name, "no-such-member", 1, topic)
    assert isinstance(error_for_code(unknown.error_code), UnknownMemberIdError)
    assert heartbeat(network, bootstrap, topic_name, topic, member.member_id, epochs[2]).error_code == 0
    fetched = network.request(bootstrap, protocol.OFFSET_FETCH, protocol.OffsetFetchRequest(topic_name, None), 5_000)
    assert fetched.error_code == 0 and fetched.topics == [], "no refused commit was stored"


def test_bad_group_ids_assignors_patterns_and_unknown_groups(shared_broker, network, topic):
    bootstrap = shared_broker.bootstrap
    answer = network.request(bootstrap, protocol.FIND_COORDINATOR, protocol.FindCoordinatorRequest(""), 5_000)
    assert isinstance(error_for_code(answer.error_code), InvalidGroupIdError)
    with pytest.raises(InvalidConfigError):
        Consumer(bootstrap, group_id="", topics=[topic])
    with pytest.raises(InvalidConfigError):
        Consumer(bootstrap, group_id="g", topics=[topic], assignor="fair")
    with pytest.raises(InvalidConfigError):
        Consumer(bootstrap, group_id="g", pattern="orders-(")
    with pytest.raises(InvalidConfigError):
        Consumer(bootstrap, group_id="g", topics=[topic], session_timeout_ms=1000, heartbeat_interval_ms=1000)
    request = protocol.ConsumerGroupHeartbeatRequest("g", "", 0, "t", [topic], "(", "sticky", 5000, [])
    coordinator = wait_until(lambda: _coordinator(network, bootstrap, "g"), 30, "a coordinator")
    bad = network.request(coordinator, protocol.CONSUMER_GROUP_HEARTBEAT, request, 5_000)
    assert isinstance(error_for_code(bad.error_code), InvalidConfigError)
    described = network.request(coordinator, protocol.DESCRIBE_GROUP, protocol.DescribeGroupRequest("g"), 5_000)
    assert isinstance(error_for_code(described.error_code), GroupIdNotFoundError)


def _coordinator(network, bootstrap, group) -> str | None:
    answer = network.request(bootstrap, protocol.FIND_COORDINATOR, protocol.FindCoordinatorRequest(group), 5_000)
    return f"{answer.host}:{answer.port}" if answer.error_code == 0 else None


def test_a_consumer_with_assigned_partitions_commits_only_for_an_empty_group(shared_broker, topic, topic_name):
    partition = TopicPartition(topic, 0)
    with Consumer(shared_broker.bootstrap, group_id=topic_name, enable_auto_commit=False) as outsider:
        outsider.assign([partition])
        outsider.commit(offsets={partition: 4})
        assert outsider.committed([partition]) == {partition: 4}
        with group_consumer(shared_broker.bootstrap, topic_name, topic, enable_auto_commit=False) as member:
            poll_until_assigned(member, 2)
            assert member.position(partition) == 4, "the member starts at the group's committed offset"
            with pytest.raises(GroupNotEmptyError):
                outsider.commit(offsets={partition: 7})
        assert outsider.committed([partition]) == {partition: 4}


def test_clients_cannot_write_to_the_offsets_topic(shared_broker, topic, topic_name):
    partition = TopicPartition(topic, 0)
    with group_consumer(shared_broker.bootstrap, topic_name, topic, enable_auto_commit=False) as member:
        poll_until_assigned(member, 2)
        member.commit(offsets={partition: 6})
        with Producer(shared_broker.bootstrap, acks="all") as producer:
            with pytest.raises(InvalidTopicError, match="internal topic"):
                producer.send(protocol.OFFSETS_TOPIC, b"forged", key=b"forged").result(timeout=30)
        assert member.committed([partition]) == {partition: 6}
