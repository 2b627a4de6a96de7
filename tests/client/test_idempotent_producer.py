"""The idempotent producer against real brokers: it gets a producer id, stamps its batches with it and
with per-partition sequences, keeps each partition's order with 5 requests in flight, and a batch
retried after a lost response is stored once."""

from __future__ import annotations

import logging
import signal
from collections import defaultdict
from pathlib import Path

import pytest
from brokers import BrokerProcess, ClusterProcesses
from rill.client import Admin, Consumer, Producer, TopicPartition, protocol
from rill.client.batch import BatchHeader, iter_batches
from rill.client.network import NetworkClient
from rill.client.partitioner import partition_for_key
from rill.client.zmq_flavor import new_context

LINGER_MS = 60_000  # batches close only when flushed


def stored_headers(bootstrap: str, topic: str, partition: int = 0) -> list[BatchHeader]:
    """The headers of every batch a one-broker cluster stores for the partition, read by a raw Fetch."""
    context = new_context()
    network = NetworkClient(context)
    try:
        request = protocol.FetchRequest(0, 0, 64 << 20, [protocol.TopicFetch(
            topic, [protocol.PartitionFetch(partition, 0, 64 << 20)])])
        response = network.request(bootstrap, protocol.FETCH, request, 10_000)
    finally:
        network.close()
        context.term()
    data = response.topics[0].partitions[0]
    assert data.error_code == 0, data.error_message
    return [header for _, header in iter_batches(data.records)]


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> dict[int, list]:
    """Every record of the topic, per partition, in offset order."""
    found: dict[int, list] = defaultdict(list)
    with Consumer(bootstrap, auto_offset_reset="earliest", max_poll_records=10_000) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        for _ in range(300):
            for record in consumer.poll(0.2):
                found[record.partition].append(record)
            if sum(map(len, found.values())) >= expected:
                break
    return found


def check_sequences(headers: list[BatchHeader]) -> None:
    """One producer id and epoch, sequences from 0, each batch's continuing the one before."""
    assert headers and {(h.producer_id, h.producer_epoch) for h in headers} == {(headers[0].producer_id, 0)}
    assert headers[0].producer_id >= 0
    expected = 0
    for header in headers:
        assert header.base_sequence == expected, f"batch at offset {header.base_offset}"
        expected += header.record_count


def send_batches(producer: Producer, topic: str, sizes: list[int]) -> None:
    """One batch per entry, of that many records: the producer's linger is long, flush closes the batch."""
    for size in sizes:
        futures = [producer.send(topic, b"v") for _ in range(size)]
        producer.flush(30)
        assert all(future.exception(0) is None for future in futures)


def test_batches_carry_the_producer_id_and_sequences(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap, linger_ms=LINGER_MS) as first, \
            Producer(shared_broker.bootstrap, linger_ms=LINGER_MS) as second:
        send_batches(first, topic_name, [1, 2, 3])
        send_batches(second, topic_name, [4])
    headers = stored_headers(shared_broker.bootstrap, topic_name)
    assert [h.record_count for h in headers] == [1, 2, 3, 4]
    check_sequences(headers[:3])
    check_sequences(headers[3:])
    assert headers[3].producer_id != headers[0].producer_id, "each producer gets an id of its own"


@pytest.mark.parametrize("settings", [{"enable_idempotence": False}, {"acks": 1}],
                         ids=["idempotence-off", "acks-1"])
def test_without_idempotence_batches_carry_no_producer_id(admin, shared_broker, topic_name, settings):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap, linger_ms=LINGER_MS, **settings) as producer:
        send_batches(producer, topic_name, [2, 1])
    headers = stored_headers(shared_broker.bootstrap, topic_name)
    assert [(h.producer_id, h.producer_epoch, h.base_sequence) for h in headers] == [(-1, -1, -1)] * 2


def test_five_requests_in_flight_keep_each_partitions_order(admin, shared_broker, topic_name):
    """Small batches and no linger put many requests in flight at once; per partition the records come
    back in send order, once each, and the stored sequences have no gap."""
    partitions, records = 3, 30_000
    admin.create_topic(topic_name, partitions=partitions)
    sent: dict[int, int] = defaultdict(int)  # partition -> records sent to it, the counter in each value
    with Producer(shared_broker.bootstrap, linger_ms=0, batch_size=512, compression="none",
                  max_in_flight_requests_per_connection=5) as producer:
        futures = []
        for number in range(records):
            key = b"key-%d" % (number % 97)
            partition = partition_for_key(key, partitions)
            futures.append(producer.send(topic_name, b"%d" % sent[partition], key=key))
            sent[partition] += 1
        producer.flush(60)
    assert all(future.exception(0) is None for future in futures)
    found = read_all(shared_broker.bootstrap, topic_name, partitions, records)
    for partition in range(partitions):
        counters = [int(record.value) for record in found[partition]]
        assert counters == list(range(sent[partition])), f"partition {partition}: in order, each once"
        check_sequences(stored_headers(shared_broker.bootstrap, topic_name, partition))


@pytest.fixture
def lossy_broker(tmp_path: Path):
    """A broker that stores every produce but leaves 30% of the answers unsent (the client times out)."""
    broker = BrokerProcess(tmp_path / "lossy", settings={"testing_drop_produce_responses": 0.3}).start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_batch_retried_after_a_lost_answer_is_stored_once(lossy_broker, caplog):
    topic, records = "lossy", 3_000
    with Admin(lossy_broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic)
    caplog.set_level(logging.WARNING, logger="rill.client.sender")
    with Producer(lossy_broker.bootstrap, linger_ms=2, batch_size=2_048, request_timeout_ms=1_000,
                  delivery_timeout_ms=60_000, retry_backoff_ms=20) as producer:
        futures = [producer.send(topic, b"%d" % number) for number in range(records)]
        producer.flush(60)
    offsets = [future.result(0).offset for future in futures]
    retried = [r for r in caplog.records if "retrying" in r.getMessage() and "RequestTimeoutError" in r.getMessage()]
    assert retried, "answers were lost and batches retried"
    stored = read_all(lossy_broker.bootstrap, topic, 1, records)[0]
    assert [record.value for record in stored] == [b"%d" % number for number in range(records)]
    assert offsets == list(range(records)), "a retried batch is answered with the offsets it was stored at"


def test_the_producer_id_lookup_outlasts_a_dead_controller(tmp_path: Path):
    """The controller is killed just before the producer starts; whether the producer's first lookup
    reaches the dead controller (and backs off and asks again) or the new one, the record is stored with
    a producer id. (tests/client/test_sender_producer_id.py covers the failures deterministically.)"""
    cluster = ClusterProcesses(tmp_path / "cluster", 3).start_all()
    try:
        cluster.create_topic("orders")
        controller = cluster.controller_id()
        cluster.kill(controller, signal.SIGKILL)
        with Producer(cluster.bootstrap, linger_ms=0, request_timeout_ms=1_000) as producer:
            producer.send("orders", b"first").result(timeout=30)
        assert cluster.wait_for_controller(not_in=[controller]) != controller
        leader = cluster.wait_for_leader("orders", not_in=[controller]).leader
        headers = stored_headers(cluster[leader].bootstrap, "orders")
        assert len(headers) == 1 and headers[0].producer_id >= 0 and headers[0].base_sequence == 0
    finally:
        cluster.stop_all(timeout_s=10)
