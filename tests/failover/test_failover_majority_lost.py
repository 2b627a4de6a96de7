"""Two of three brokers down, on a topic with min.insync.replicas=2.

With every broker a Raft member, two dead brokers also take the Raft
majority: no controller can commit anything, so nobody fences the dead
brokers and the ISR cannot shrink. The expected observable behaviour:
acks="all" writes are not acknowledged (the surviving leader cannot move the
high watermark: the writes time out, or are refused with NotEnoughReplicas
if the ISR had shrunk to one); metadata changes are refused in bounded time;
once one broker returns, the majority is back and writes succeed again,
without losing an acknowledged record.
"""

from __future__ import annotations

import signal
import time

import zmq
from brokers import (
    AckedWriter,
    ClusterProcesses,
    check_acknowledged_records,
    read_partition,
    wait_until,
)
from rill.client import Producer, protocol
from rill.client.batch import encode_batch
from rill.client.errors import (
    NotEnoughReplicasError,
    RequestTimeoutError,
    RillError,
    error_for_code,
)
from rill.client.network import NetworkClient

TOPIC_CONFIG = {"min.insync.replicas": 2}
NOT_ACKNOWLEDGED = (NotEnoughReplicasError, RequestTimeoutError)


def produce_raw(address: str, topic: str, value: bytes, timeout_ms: int) -> protocol.PartitionProduceResponse:
    """One acks=all produce request straight to a broker: its per-partition answer, no client retries."""
    context = zmq.Context()
    network = NetworkClient(context, "failover-test")
    try:
        request = protocol.ProduceRequest(-1, timeout_ms, [protocol.TopicProduceData(
            topic, [protocol.PartitionProduceData(0, encode_batch([value]))])])
        return network.request(address, protocol.PRODUCE, request, timeout_ms + 5_000).topics[0].partitions[0]
    finally:
        network.close()
        context.term()


def test_failover_two_of_three_down_then_one_back(cluster: ClusterProcesses):
    topic = "two-down"
    cluster.create_topic(topic, config=TOPIC_CONFIG)
    with AckedWriter(cluster.bootstrap, topic, max_in_flight_requests_per_connection=1, retry_backoff_ms=50) as writer:
        writer.wait_acked(1_000, 60)
        leader = cluster.leader_of(topic)
        followers = [node_id for node_id in cluster.node_ids if node_id != leader]
        for node_id in followers:
            cluster.kill(node_id, signal.SIGKILL)

        # The surviving leader takes the write but cannot get it acknowledged.
        answer = produce_raw(cluster[leader].bootstrap, topic, b"raw probe", timeout_ms=1_000)
        raw_error = error_for_code(answer.error_code, answer.error_message)
        assert answer.error_code and isinstance(raw_error, NOT_ACKNOWLEDGED), (
            f"acks=all produce with one live replica of three: {answer}")
        acked_after_raw_probe = len(writer.acked)  # what was in flight at the kill has its answer by now
        with Producer(cluster[leader].bootstrap, acks="all", request_timeout_ms=1_000,
                      delivery_timeout_ms=3_000) as producer:
            future = producer.send(topic, b"producer probe")
            producer.flush(30)
        assert isinstance(future.exception(), NOT_ACKNOWLEDGED), f"producer probe: {future.exception()!r}"
        print(f"with two of three brokers down: raw produce -> {type(raw_error).__name__} ({answer.error_message}); "
              f"producer -> {type(future.exception()).__name__} ({future.exception()})")
        assert len(writer.acked) == acked_after_raw_probe, (
            "the writer got no acknowledgement either while one replica of three lived")

        back, still_down = followers
        cluster.start(back)
        writer.wait_more_acked(1_000, 60, f"writes to succeed again once broker {back} is back")
        with Producer(cluster.bootstrap_of([leader, back]), acks="all") as producer:
            producer.send(topic, b"after one came back").result(timeout=60)
        writer.stop()
    assert not writer.failed, f"{len(writer.failed)} writes failed, first: {writer.failed[:3]}"
    records = read_partition(cluster.bootstrap_of([leader, back]), topic, min_end_offset=writer.end_offset())
    check_acknowledged_records(records, writer.acked, stored_at=writer.stored_at)

    cluster.start(still_down)
    cluster.wait_full_isr(topic, timeout_s=60)


def test_failover_two_of_three_down_no_controller(cluster: ClusterProcesses):
    """The survivor of a lost majority says there is no controller (ClusterDescription: "-1 while there is
    none") and refuses metadata changes within the request timeout."""
    topic = "no-majority"
    cluster.create_topic(topic, config=TOPIC_CONFIG)
    controller = cluster.controller_id()
    survivor = next(node_id for node_id in cluster.node_ids if node_id != controller)
    for node_id in cluster.node_ids:
        if node_id != survivor:
            cluster.kill(node_id, signal.SIGKILL)

    with cluster.admin([survivor], request_timeout_ms=3_000) as admin:
        started = time.monotonic()
        try:
            admin.create_topic("while-no-majority", partitions=1, replication_factor=1)
            outcome: object = "created"
        except RillError as error:
            outcome = error
        assert isinstance(outcome, RillError) and outcome.retriable, f"create_topic without a majority: {outcome!r}"
        assert time.monotonic() - started < 30, "the refusal came within a bounded time"
        print(f"create_topic with two of three brokers down: {outcome!r}")
        wait_until(lambda: cluster.try_(lambda: admin.describe_cluster().controller_id) == -1, 10,
                   f"broker {survivor}, alone of three, to report no controller (it reports "
                   f"{cluster.try_(lambda: admin.describe_cluster())})")
