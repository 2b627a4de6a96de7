"""Produce-side limits against a leader whose follower never confirms: a 2-broker cluster with the
follower stopped (SIGSTOP). Raft has no majority then, so nothing shrinks the ISR and every acks=all produce
parks at the leader until its timeout, which the broker caps (max_produce_timeout_ms). Floods of such
produces past max_parked_requests_per_connection, max_parked_requests and max_pending_acks_per_partition get
ThrottlingQuotaExceededError before anything is appended; another client is served meanwhile; the leader's
memory stays bounded. Fetch waits are capped too (max_fetch_wait_ms).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import zmq
from brokers import ClusterProcesses
from raw_wire import RawConnection
from rill.client import Admin, Producer, protocol
from rill.client.batch import encode_batch
from rill.client.errors import RequestTimeoutError, ThrottlingQuotaExceededError

PER_CONNECTION = 20
TOTAL = 50
PENDING_ACKS_MAX = 60
PRODUCE_TIMEOUT_MAX_MS = 3_000
FETCH_WAIT_MAX_MS = 1_500
LIMITS = {"max_parked_requests_per_connection": PER_CONNECTION, "max_parked_requests": TOTAL,
          "max_pending_acks_per_partition": PENDING_ACKS_MAX, "max_produce_timeout_ms": PRODUCE_TIMEOUT_MAX_MS,
          "max_fetch_wait_ms": FETCH_WAIT_MAX_MS, "controlled_shutdown_timeout_ms": 1_000}
TOPIC = "stalled"
ASKED_TIMEOUT_MS = 600_000  # what the floods ask for; the broker cuts it to PRODUCE_TIMEOUT_MAX_MS
ANSWER_WAIT_S = 30.0  # far above the caps: an answer this late means a cap did not hold
RSS_GROWTH_MAX = 300 * 1024 * 1024
THROTTLED = ThrottlingQuotaExceededError.code


@pytest.fixture(scope="module")
def leader(tmp_path_factory: pytest.TempPathFactory):
    """The leader of TOPIC-0, its follower stopped; stopped (and the follower resumed) at the end."""
    cluster = ClusterProcesses(tmp_path_factory.mktemp("stalled"), 2, settings=LIMITS)
    try:
        cluster.start_all()
        [partition] = cluster.create_topic(TOPIC)
        cluster.kill(next(node for node in cluster.node_ids if node != partition.leader), signal.SIGSTOP)
        yield cluster[partition.leader]
    finally:
        cluster.stop_all(timeout_s=10)


@pytest.fixture(scope="module")
def context():
    context = zmq.Context()
    yield context
    context.term()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def acks_all(entries: int = 1, timeout_ms: int = ASKED_TIMEOUT_MS) -> protocol.ProduceRequest:
    """An acks=all produce of ``entries`` one-record batches to TOPIC-0."""
    data = [protocol.PartitionProduceData(0, encode_batch([b"parked"], None, [int(time.time() * 1000)]))]
    return protocol.ProduceRequest(-1, timeout_ms, [protocol.TopicProduceData(TOPIC, data * entries)])


def partition_codes(envelope: protocol.ResponseEnvelope) -> list[int]:
    response = protocol.decode_response_body(protocol.PRODUCE.key, envelope.body)
    return [p.error_code for t in response.topics for p in t.partitions]


def check_other_client_served(leader) -> None:
    """Metadata from the leader, and an acks=1 write to the stalled partition (answered without the follower)."""
    with Admin(leader.bootstrap, request_timeout_ms=10_000) as admin:
        assert TOPIC in admin.list_topics()
    with Producer(leader.bootstrap, acks=1, request_timeout_ms=10_000) as producer:
        producer.send(TOPIC, b"served", partition=0).result(timeout=10)


def collect_all(connections: list[RawConnection], count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(len(connection.received) for connection in connections) < count:
        assert time.monotonic() < deadline, f"fewer than {count} answers within {timeout_s} s"
        for connection in connections:
            connection.collect_ready()
        time.sleep(0.01)


def test_parked_produces_per_connection_are_bounded(leader, context):
    sent = 2 * PER_CONNECTION
    baseline = rss_bytes(leader.pid)
    with RawConnection(context, leader.bootstrap, "flood") as flood:
        for _ in range(sent):
            flood.send(protocol.PRODUCE, acks_all())
        flood.collect(sent - PER_CONNECTION, timeout_s=ANSWER_WAIT_S)
        refused = flood.received[:sent - PER_CONNECTION]
        check_other_client_served(leader)
        assert rss_bytes(leader.pid) - baseline < RSS_GROWTH_MAX
        flood.collect(sent, timeout_s=ANSWER_WAIT_S)
    assert [answer.error_code for answer in refused] == [THROTTLED] * (sent - PER_CONNECTION)
    assert "max_parked_requests_per_connection" in refused[0].error_message
    parked = flood.received[sent - PER_CONNECTION:]
    assert [partition_codes(answer) for answer in parked] == [[RequestTimeoutError.code]] * PER_CONNECTION


def test_parked_produces_in_all_are_bounded(leader, context):
    connections = [RawConnection(context, leader.bootstrap, f"flood-{n}") for n in range(4)]
    sent = len(connections) * PER_CONNECTION
    try:
        for _ in range(PER_CONNECTION):
            for connection in connections:
                connection.send(protocol.PRODUCE, acks_all())
        collect_all(connections, sent - TOTAL, ANSWER_WAIT_S)
        refused = [answer for connection in connections for answer in connection.received]
        check_other_client_served(leader)
        collect_all(connections, sent, ANSWER_WAIT_S)
    finally:
        for connection in connections:
            connection.close()
    assert [answer.error_code for answer in refused] == [THROTTLED] * (sent - TOTAL)
    assert any("max_parked_requests)" in answer.error_message for answer in refused)
    answers = [answer for connection in connections for answer in connection.received]
    timed_out = [answer for answer in answers if answer.error_code == 0]
    assert [partition_codes(answer) for answer in timed_out] == [[RequestTimeoutError.code]] * TOTAL


def test_pending_acks_per_partition_are_bounded(leader, context):
    """One request naming the partition more often than it may hold unconfirmed writes: the rest are refused,
    per partition, before they are appended; the timed-out ones stop counting, so the next request gets room."""
    extra = 10
    with RawConnection(context, leader.bootstrap, "pending") as connection:
        for _ in range(2):
            correlation_id = connection.send(protocol.PRODUCE, acks_all(PENDING_ACKS_MAX + extra))
            check_other_client_served(leader)
            connection.collect(len(connection.received) + 1, timeout_s=ANSWER_WAIT_S)
            codes = partition_codes(connection.answers[correlation_id])
            assert codes == [RequestTimeoutError.code] * PENDING_ACKS_MAX + [THROTTLED] * extra


def test_produce_and_fetch_waits_are_capped(leader, context):
    with RawConnection(context, leader.bootstrap, "waits") as connection:
        produced = connection.request(protocol.PRODUCE, acks_all(), timeout_s=ANSWER_WAIT_S)
        [result] = produced.topics[0].partitions
        assert result.error_code == RequestTimeoutError.code
        assert f"within {PRODUCE_TIMEOUT_MAX_MS} ms" in result.error_message, "the asked 10 minutes were cut"
        fetch = protocol.FetchRequest(ASKED_TIMEOUT_MS, 100 << 20, 100 << 20, [protocol.TopicFetch(TOPIC, [
            protocol.PartitionFetch(0, 0, 100 << 20)])])
        fetched = connection.request(protocol.FETCH, fetch, timeout_s=ANSWER_WAIT_S)
        assert fetched.topics[0].partitions[0].error_code == 0, "a long poll ends at max_fetch_wait_ms"
