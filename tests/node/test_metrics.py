"""/metrics on a node's HTTP port: Prometheus text that counts what the brokers did, against real brokers."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from brokers import ClusterProcesses, poll_until_assigned, wait_until
from node_http import scrape
from rill.client import Admin, Consumer, Producer, TopicPartition
from rill.client.batch import encode_batch, read_header
from rill.client.errors import TopicAlreadyExistsError
from rill.node.broker_stats import LATENCY_BUCKETS_S, LatencyHistogram, records_from


def produce(bootstrap: str, topic: str, count: int) -> None:
    with Producer(bootstrap, linger_ms=5, batch_size=512) as producer:  # several batches
        for number in range(count):
            producer.send(topic, b"record-%d" % number, partition=0)
        producer.flush()


def consume(bootstrap: str, topic: str, count: int, start_offset: int = 0) -> None:
    tp = TopicPartition(topic, 0)
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, start_offset)
        records: list = []
        wait_until(lambda: records.extend(consumer.poll(0.1)) or len(records) >= count, 30, f"{count} records")
        assert len(records) == count


def test_records_and_bytes_in_and_out_count_each_record_once(shared_broker, topic_name):
    port = shared_broker.address.http_port
    with Admin(shared_broker.bootstrap) as admin:
        admin.create_topic(topic_name, partitions=1, replication_factor=1)
    before = scrape(port)
    assert before.value("rill_topic_records_in_total", topic=topic_name) is None, "no traffic, no series yet"

    produce(shared_broker.bootstrap, topic_name, 137)
    produced = scrape(port)
    assert produced.value("rill_topic_records_in_total", topic=topic_name) == 137
    assert produced.value("rill_topic_bytes_in_total", topic=topic_name) > 137 * len(b"record-0")
    assert produced.value("rill_topic_records_out_total", topic=topic_name) == 0

    consume(shared_broker.bootstrap, topic_name, 137)
    consumed = scrape(port)
    assert consumed.value("rill_topic_records_out_total", topic=topic_name) == 137
    assert consumed.value("rill_topic_bytes_out_total", topic=topic_name) == \
        produced.value("rill_topic_bytes_in_total", topic=topic_name), "every stored byte was read once"

    consume(shared_broker.bootstrap, topic_name, 137 - 50, start_offset=50)
    again = scrape(port)
    assert again.value("rill_topic_records_out_total", topic=topic_name) == 137 + 87, (
        "a fetch from the middle of a batch counts the records from the fetch offset on")
    assert again.value("rill_log_size_bytes", topic=topic_name, partition="0") > 0
    assert again.value("rill_log_segments", topic=topic_name, partition="0") >= 1


def test_requests_latency_and_errors_per_request_type(shared_broker, topic_name):
    port = shared_broker.address.http_port
    with Admin(shared_broker.bootstrap) as admin:
        admin.create_topic(topic_name, partitions=1, replication_factor=1)
        before = scrape(port)
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topic(topic_name, partitions=1, replication_factor=1)
    produce(shared_broker.bootstrap, topic_name, 3)
    consume(shared_broker.bootstrap, topic_name, 3)
    after = scrape(port)

    assert after.families["rill_request_duration_seconds"].type == "histogram"
    for api in ("metadata", "create_topic", "produce", "fetch"):
        count = after.value("rill_requests_total", api=api)
        assert count and count > before.value("rill_requests_total", 0, api=api), api
        assert after.value("rill_request_duration_seconds_count", api=api) == count
        assert after.value("rill_request_duration_seconds_bucket", api=api, le="+Inf") == count
        buckets = [after.value("rill_request_duration_seconds_bucket", api=api, le=repr(bound))
                   for bound in LATENCY_BUCKETS_S]
        assert buckets == sorted(buckets), "histogram buckets are cumulative"
        assert after.value("rill_request_duration_seconds_sum", api=api) > 0
    already = {"api": "create_topic", "error": "TopicAlreadyExistsError"}
    assert after.value("rill_request_errors_total", **already) == before.value("rill_request_errors_total", 0,
                                                                               **already) + 1


def test_broker_wide_gauges_on_one_broker(shared_broker):
    metrics = scrape(shared_broker.address.http_port)
    for name in ("rill_partitions", "rill_leader_partitions", "rill_under_replicated_partitions",
                 "rill_offline_replicas", "rill_offline_partitions", "rill_parked_requests", "rill_parked_fetches",
                 "rill_pending_acks", "rill_raft_term", "rill_raft_commit_index", "rill_isr_shrinks_total",
                 "rill_event_loop_lag_p50_seconds", "rill_event_loop_lag_p99_seconds",
                 "rill_event_loop_lag_max_seconds"):
        assert metrics.value(name) is not None, name
    assert metrics.value("rill_controller_active") == 1, "a one-node cluster's node is its controller"
    assert metrics.value("rill_raft_role", role="leader") == 1
    assert metrics.value("rill_under_replicated_partitions") == 0
    assert metrics.value("rill_node_info", node_id="1", cluster_id="test") == 1


def test_group_members_state_and_rebalances(shared_broker, topic_name):
    port = shared_broker.address.http_port
    group = f"{topic_name}-group"
    with Admin(shared_broker.bootstrap) as admin:
        admin.create_topic(topic_name, partitions=2, replication_factor=1)
    with Consumer(shared_broker.bootstrap, group_id=group, topics=[topic_name],
                  heartbeat_interval_ms=100) as consumer:
        poll_until_assigned(consumer, 2)

        def stable():
            consumer.poll(0.05)  # the member heartbeats inside poll: it reports what it owns
            metrics = scrape(port)
            return metrics if metrics.value("rill_consumer_group_state", group=group, state="Stable") == 1 else None

        joined = wait_until(stable, 30, "a stable group")
        assert joined.value("rill_consumer_group_members", group=group) == 1
        assert joined.value("rill_consumer_group_state", group=group, state="Reconciling") == 0
        assert joined.value("rill_consumer_group_rebalances_total", group=group) >= 1
    left = wait_until(lambda: (m := scrape(port)).value("rill_consumer_group_members", group=group) in (0, None)
                      and m, 30, "the member to leave")
    assert left.value("rill_consumer_group_state", group=group, state="Stable") in (0, None)


def test_records_are_counted_from_batch_headers_from_the_fetch_offset():
    batches = b""
    base = 0
    for size in (3, 4, 5):
        batch = bytearray(encode_batch([b"v"] * size))
        batch[0:8] = base.to_bytes(8, "big")  # the base offset a broker assigns
        batches += bytes(batch)
        base += size
    assert read_header(batches).record_count == 3
    assert records_from(batches, 0) == 12
    assert records_from(batches, 2) == 10, "the first batch holds offsets 0-2: only offset 2 is new"
    assert records_from(batches, 3) == 9
    assert records_from(b"", 0) == 0


def test_latency_histogram_buckets():
    histogram = LatencyHistogram()
    for seconds in (0.0001, 0.0005, 0.003, 100.0):
        histogram.observe(seconds)
    buckets = dict(histogram.cumulative())
    assert buckets["0.0005"] == 2, "a bucket counts latencies at or below its bound"
    assert buckets["0.005"] == 3
    assert buckets["30.0"] == 3 and buckets["+Inf"] == 4
    assert histogram.sum_s == pytest.approx(100.0036)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    processes = ClusterProcesses(Path(tmp_path_factory.mktemp("metrics-cluster")), 3)
    try:
        yield processes.start_all()
    finally:
        processes.stop_all()


def test_one_controller_among_three_nodes(cluster):
    def one_controller():
        scrapes = {node_id: scrape(cluster[node_id].address.http_port) for node_id in cluster.node_ids}
        active = [node_id for node_id, m in scrapes.items() if m.value("rill_controller_active") == 1]
        with_raft = all(m.value("rill_raft_term") is not None for m in scrapes.values())  # see _raft in metrics.py
        return scrapes if len(active) == 1 and with_raft else None

    scrapes = wait_until(one_controller, 30, "exactly one node with rill_controller_active 1")
    leaders = [node_id for node_id, m in scrapes.items() if m.value("rill_raft_role", role="leader") == 1]
    controllers = [node_id for node_id, m in scrapes.items() if m.value("rill_controller_active") == 1]
    assert leaders == controllers
    for node_id, metrics in scrapes.items():
        assert metrics.value("rill_raft_term") >= 1, node_id
        assert metrics.value("rill_raft_commit_index") > 0, node_id
        assert sum(metrics.value("rill_raft_role", role=role) for role in ("leader", "follower", "candidate")) == 1


def test_under_replicated_partitions_follow_a_killed_follower(cluster, topic_name):
    info = cluster.create_topic(topic_name)[0]
    leader_port = cluster[info.leader].address.http_port
    follower = next(node_id for node_id in info.replicas if node_id != info.leader)
    before = scrape(leader_port)
    assert before.value("rill_under_replicated_partitions") == 0

    cluster.kill(follower, signal.SIGKILL)
    shrunk = wait_until(lambda: (m := scrape(leader_port)).value("rill_under_replicated_partitions") > 0 and m,
                        30, "the leader to report an under-replicated partition")
    assert shrunk.value("rill_isr_shrinks_total") > before.value("rill_isr_shrinks_total")

    cluster.start(follower)
    back = wait_until(lambda: (m := scrape(leader_port)).value("rill_under_replicated_partitions") == 0 and m,
                      30, "the returned follower back in the ISR")
    assert back.value("rill_isr_expands_total") > before.value("rill_isr_expands_total")
    assert cluster.partition(topic_name).leader == info.leader, "the leader stayed: its gauges are the ones read"
