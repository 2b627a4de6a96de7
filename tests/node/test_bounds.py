"""Every queue and table a client can grow in a broker has a limit, against one real broker whose
limits are set low: a flood past each limit gets its typed error, another client is served meanwhile, and
(for parked requests) the broker's memory stays bounded.

Parked fetches wait for data (min_bytes 1 on an empty topic, max_wait_ms 60 s), so a flood stays parked until
the test produces to its topic: "meanwhile" does not depend on timing. Produce-side limits (parked acks=all
produces, pending acks, wait caps) need a follower that does not confirm: test_bounds_replicated.py.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import zmq
from brokers import BrokerProcess, wait_until
from node_http import scrape
from raw_wire import RawConnection
from rill.client import Admin, Consumer, Producer, TopicPartition, protocol
from rill.client.errors import (
    GroupMaxSizeReachedError,
    InvalidConfigError,
    InvalidRegularExpressionError,
    OffsetMetadataTooLargeError,
    ThrottlingQuotaExceededError,
    TooManyGroupsError,
    UnknownTopicError,
)
from rill.node.config import POSITIVE_LIMITS, load_node_config

PER_CONNECTION = 20
TOTAL = 60
MAX_GROUPS = 6
GROUP_MAX_SIZE = 3
PATTERN_LENGTH_MAX = 200
FETCH_MAX_BYTES = 65_536
LIMITS = {"max_parked_requests_per_connection": PER_CONNECTION, "max_parked_requests": TOTAL,
          "max_groups": MAX_GROUPS, "group_max_size": GROUP_MAX_SIZE,
          "max_subscription_pattern_length": PATTERN_LENGTH_MAX, "fetch_max_bytes": FETCH_MAX_BYTES}
METADATA_MAX_BYTES = 4_096  # the default offset_metadata_max_bytes, as Kafka's
DUPLICATES = 2_000  # partition entries per flood fetch: a parked fetch holds memory in proportion to them
RSS_GROWTH_MAX = 300 * 1024 * 1024
THROTTLED = ThrottlingQuotaExceededError.code


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    process = BrokerProcess(tmp_path_factory.mktemp("bounds"), settings=LIMITS)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def context():
    context = zmq.Context()
    yield context
    context.term()


@pytest.fixture
def raw(broker, context):
    with RawConnection(context, broker.bootstrap, "bounds-test") as connection:
        yield connection


def rss_bytes(pid: int) -> int:
    """The process's resident set size, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> str:
    with Admin(bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic, partitions=partitions, replication_factor=1)
    return topic


def produce(bootstrap: str, topic: str, value: bytes, partition: int = 0) -> int:
    with Producer(bootstrap, acks=1) as producer:
        return producer.send(topic, value, partition=partition).result(timeout=10).offset


def parking_fetch(topic: str) -> protocol.FetchRequest:
    """A fetch that parks on an empty partition until a record arrives, naming it DUPLICATES times."""
    wanted = [protocol.PartitionFetch(0, 0, 1 << 20)] * DUPLICATES
    return protocol.FetchRequest(60_000, 1, 1 << 20, [protocol.TopicFetch(topic, wanted)])


def check_other_client_served(bootstrap: str, topic: str, consume: bool = True) -> None:
    """A client on connections of its own: metadata, an acks=1 produce, and (``consume``) a consumer's poll."""
    with Admin(bootstrap, request_timeout_ms=10_000) as admin:
        assert topic in admin.list_topics()
    offset = produce(bootstrap, topic, b"served")
    if consume:
        with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition(topic, 0)])
            wait_until(lambda: any(r.offset == offset for r in consumer.poll(0.2)), 20, "the consumer's record")


def collect_all(connections: list[RawConnection], count: int, timeout_s: float) -> None:
    """Wait until ``count`` answers arrived over all the connections together."""
    def arrived() -> bool:
        for connection in connections:
            connection.collect_ready()
        return sum(len(connection.received) for connection in connections) >= count

    wait_until(arrived, timeout_s, f"{count} answers", interval_s=0.01)


# ---- parked requests ---------------------------------------------------------------------------


def test_parked_fetches_per_connection_are_bounded(broker, context, topic_name):
    flood_topic = create_topic(broker.bootstrap, f"{topic_name}-flood")
    served_topic = create_topic(broker.bootstrap, topic_name)
    flood_count = 1_000
    baseline = rss_bytes(broker.pid)
    with RawConnection(context, broker.bootstrap, "flood") as flood:
        for _ in range(flood_count):
            flood.send(protocol.FETCH, parking_fetch(flood_topic))
        flood.collect(flood_count - PER_CONNECTION, timeout_s=60)  # the refused ones are answered at once
        assert [answer.error_code for answer in flood.received] == [THROTTLED] * (flood_count - PER_CONNECTION)
        assert "max_parked_requests_per_connection" in flood.received[0].error_message
        growth = rss_bytes(broker.pid) - baseline
        assert growth < RSS_GROWTH_MAX, f"the broker grew by {growth / 2**20:.0f} MiB"
        check_other_client_served(broker.bootstrap, served_topic)
        flood.collect_ready()
        assert len(flood.received) == flood_count - PER_CONNECTION, "the parked fetches are still waiting"
        produce(broker.bootstrap, flood_topic, b"release")
        flood.collect(flood_count, timeout_s=30)
    released = flood.received[-PER_CONNECTION:]
    assert all(answer.error_code == 0 for answer in released), "each parked fetch is answered with the record"


def wait_until_nothing_parked(broker) -> None:
    """Until the broker holds no parked request: a closed consumer's last long poll stays parked until its
    fetch_max_wait_ms runs out, and would take one place of a flood that counts the places."""
    wait_until(lambda: scrape(broker.address.http_port).value("rill_parked_requests") == 0, 30,
               "the earlier tests' parked requests to be answered")


def test_parked_requests_in_all_are_bounded(broker, context, topic_name):
    flood_topic = create_topic(broker.bootstrap, f"{topic_name}-flood")
    served_topic = create_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, served_topic, b"there before")
    wait_until_nothing_parked(broker)
    connections_count, per_connection_sent = 6, PER_CONNECTION + 5
    sent = connections_count * per_connection_sent
    baseline = rss_bytes(broker.pid)
    connections = [RawConnection(context, broker.bootstrap, f"flood-{n}") for n in range(connections_count)]
    try:
        for _ in range(per_connection_sent):
            for connection in connections:
                connection.send(protocol.FETCH, parking_fetch(flood_topic))
        collect_all(connections, sent - TOTAL, timeout_s=60)
        refused = [answer for connection in connections for answer in connection.received]
        assert [answer.error_code for answer in refused] == [THROTTLED] * (sent - TOTAL)
        assert any("max_parked_requests)" in answer.error_message for answer in refused)
        growth = rss_bytes(broker.pid) - baseline
        assert growth < RSS_GROWTH_MAX, f"the broker grew by {growth / 2**20:.0f} MiB"
        # Meanwhile: requests answered at once are served; one more that would park is refused.
        check_other_client_served(broker.bootstrap, served_topic, consume=False)
        with RawConnection(context, broker.bootstrap, "latecomer") as latecomer:
            now = latecomer.request(protocol.FETCH, protocol.FetchRequest(0, 1, 1 << 20, [protocol.TopicFetch(
                served_topic, [protocol.PartitionFetch(0, 0, 1 << 20)])]))
            assert now.topics[0].partitions[0].records, "a fetch that does not wait is served"
            with pytest.raises(ThrottlingQuotaExceededError):
                latecomer.request(protocol.FETCH, parking_fetch(flood_topic))
        produce(broker.bootstrap, flood_topic, b"release")
        collect_all(connections, sent, timeout_s=30)
    finally:
        for connection in connections:
            connection.close()
    check_other_client_served(broker.bootstrap, served_topic)  # after: a consumer's long poll is served again


def test_a_fetch_reads_at_most_fetch_max_bytes(broker, raw, topic_name):
    topic = create_topic(broker.bootstrap, topic_name)
    with Producer(broker.bootstrap, acks=1, batch_size=8_192, linger_ms=5) as producer:
        for _ in range(200):
            producer.send(topic, b"x" * 1_000)
    request = protocol.FetchRequest(0, 1, 100 << 20, [protocol.TopicFetch(topic, [
        protocol.PartitionFetch(0, 0, 100 << 20)])])
    records = raw.request(protocol.FETCH, request).topics[0].partitions[0].records
    assert 0 < len(records) <= FETCH_MAX_BYTES + 16_384, "at most fetch_max_bytes, plus a batch that straddles it"


# ---- groups --------------------------------------------------------------------------------------


def heartbeat(raw: RawConnection, group: str, member_id: str, epoch: int = 0, topics: list[str] | None = None,
              pattern: str = "") -> protocol.ConsumerGroupHeartbeatResponse:
    request = protocol.ConsumerGroupHeartbeatRequest(group, member_id, epoch, "bounds-test", topics or [], pattern,
                                                     "sticky", 60_000, [])
    return raw.request(protocol.CONSUMER_GROUP_HEARTBEAT, request)


def leave(raw: RawConnection, group: str, member_ids: list[str]) -> None:
    for member_id in member_ids:
        assert heartbeat(raw, group, member_id, -1).error_code == 0


@pytest.fixture
def coordinated(broker, raw, topic_name):
    """A topic, once this broker coordinates groups (the first FindCoordinator creates __consumer_offsets)."""
    topic = create_topic(broker.bootstrap, topic_name, partitions=2)

    def joins() -> bool:
        member = uuid.uuid4().hex
        if heartbeat(raw, f"{topic}-probe", member, topics=[topic]).error_code:
            return False
        leave(raw, f"{topic}-probe", [member])
        return True

    wait_until(lambda: raw.request(protocol.FIND_COORDINATOR, protocol.FindCoordinatorRequest(topic)).error_code == 0,
               30, "a group coordinator", interval_s=0.2)
    wait_until(joins, 30, "the coordinator to load its groups", interval_s=0.2)
    return topic


def test_members_per_group_are_bounded(broker, raw, coordinated):
    group = coordinated
    members = [uuid.uuid4().hex for _ in range(GROUP_MAX_SIZE)]
    epochs = [heartbeat(raw, group, member, topics=[coordinated]).member_epoch for member in members]
    try:
        refused = heartbeat(raw, group, uuid.uuid4().hex, topics=[coordinated])
        assert refused.error_code == GroupMaxSizeReachedError.code, refused.error_message
        with Consumer(broker.bootstrap, group_id=group, topics=[coordinated]) as consumer:
            with pytest.raises(GroupMaxSizeReachedError):
                for _ in range(200):
                    consumer.poll(0.05)
        assert heartbeat(raw, group, members[0], epochs[0], topics=[coordinated]).error_code == 0, \
            "a member of the full group is served"
        check_other_client_served(broker.bootstrap, coordinated)
    finally:
        leave(raw, group, members)


def test_groups_are_bounded(broker, raw, coordinated):
    held = len(raw.request(protocol.LIST_GROUPS, protocol.ListGroupsRequest()).groups)
    assert held < MAX_GROUPS, "other tests left room for a group"
    joined = {f"{coordinated}-{n}": uuid.uuid4().hex for n in range(MAX_GROUPS - held)}
    try:
        for group, member in joined.items():
            assert heartbeat(raw, group, member, topics=[coordinated]).error_code == 0
        refused = heartbeat(raw, f"{coordinated}-one-too-many", uuid.uuid4().hex, topics=[coordinated])
        assert refused.error_code == TooManyGroupsError.code, refused.error_message
        commit = raw.request(protocol.OFFSET_COMMIT, protocol.OffsetCommitRequest(
            f"{coordinated}-committed", "", -1, [protocol.OffsetCommitTopic(coordinated, [
                protocol.OffsetCommitPartition(0, 0, "")])]))
        assert commit.error_code == TooManyGroupsError.code, "a commit cannot start a group either"
        group, member = next(iter(joined.items()))
        assert heartbeat(raw, group, member, 1, topics=[coordinated]).error_code == 0, "existing groups are served"
        check_other_client_served(broker.bootstrap, coordinated)
    finally:
        for group, member in joined.items():
            leave(raw, group, [member])
    late = uuid.uuid4().hex
    assert heartbeat(raw, f"{coordinated}-late", late, topics=[coordinated]).error_code == 0, \
        "empty groups are forgotten, which makes room"
    leave(raw, f"{coordinated}-late", [late])


def commit(raw: RawConnection, group: str, topic: str, entries: list[tuple[int, str]]) -> dict[int, int]:
    """Commit offset 1 for each (partition, metadata) as an admin would (no member); error code per partition."""
    request = protocol.OffsetCommitRequest(group, "", -1, [protocol.OffsetCommitTopic(topic, [
        protocol.OffsetCommitPartition(partition, 1, metadata) for partition, metadata in entries])])
    response = raw.request(protocol.OFFSET_COMMIT, request)
    assert response.error_code == 0, response.error_message
    return {result.partition: result.error_code for topic_results in response.topics
            for result in topic_results.partitions}


def test_committed_offsets_are_bounded_in_metadata_and_partitions(broker, raw, coordinated):
    group = f"{coordinated}-offsets"
    produce(broker.bootstrap, coordinated, b"one")
    results = commit(raw, group, coordinated, [(0, "m" * METADATA_MAX_BYTES), (1, "m" * (METADATA_MAX_BYTES + 1)),
                                              (7, "no such partition")])
    assert results == {0: 0, 1: OffsetMetadataTooLargeError.code, 7: UnknownTopicError.code}
    assert commit(raw, group, f"{coordinated}-missing", [(0, "")]) == {0: UnknownTopicError.code}
    fetched = raw.request(protocol.OFFSET_FETCH, protocol.OffsetFetchRequest(group, None))
    stored = {(t.topic, p.partition): (p.offset, len(p.metadata)) for t in fetched.topics for p in t.partitions}
    assert stored == {(coordinated, 0): (1, METADATA_MAX_BYTES)}, "only the commit within the limits is stored"
    check_other_client_served(broker.bootstrap, coordinated)
    assert raw.request(protocol.DELETE_GROUP, protocol.DeleteGroupRequest(group)).error_code == 0


def test_subscription_patterns_are_bounded_in_length_and_cost(broker, raw, coordinated):
    group = f"{coordinated}-patterns"
    long_name = create_topic(broker.bootstrap, "a" * 200)
    too_long = heartbeat(raw, group, uuid.uuid4().hex, pattern="x" * (PATTERN_LENGTH_MAX + 1))
    assert too_long.error_code == InvalidRegularExpressionError.code
    assert "max_subscription_pattern_length" in too_long.error_message
    lookahead = heartbeat(raw, group, uuid.uuid4().hex, pattern="(?=orders).*")
    assert lookahead.error_code == InvalidRegularExpressionError.code, "RE2 has no lookarounds"
    with Consumer(broker.bootstrap, group_id=group, pattern="y" * (PATTERN_LENGTH_MAX + 1)) as consumer:
        with pytest.raises(InvalidRegularExpressionError):
            for _ in range(200):
                consumer.poll(0.05)
    # (a+)+b backtracks exponentially in Python's re over 200 a's; RE2 matches in linear time.
    started = time.monotonic()
    members = [uuid.uuid4().hex, uuid.uuid4().hex]
    catastrophic = heartbeat(raw, group, members[0], pattern="(a+)+b")
    matching = heartbeat(raw, group, members[1], pattern="a+")
    try:
        assert (catastrophic.error_code, matching.error_code) == (0, 0)
        check_other_client_served(broker.bootstrap, coordinated)
        again = heartbeat(raw, group, members[1], matching.member_epoch, pattern="a+")
        owned = {(t.topic, p) for t in again.assignment for p in t.partitions}
        assert owned <= {(long_name, 0)}, owned
    finally:
        leave(raw, group, members)
    assert time.monotonic() - started < 60, "the pattern evaluations did not stall the broker"


@pytest.mark.parametrize("name", POSITIVE_LIMITS)
def test_each_limit_is_a_node_setting_of_at_least_one(name):
    assert getattr(load_node_config(None, {"node_id": 1, name: 7}), name) == 7
    with pytest.raises(InvalidConfigError, match=f"{name} must be from 1"):
        load_node_config(None, {"node_id": 1, name: 0})
