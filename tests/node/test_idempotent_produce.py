"""Idempotent produce on real brokers, with hand-built batches: a retried batch is acknowledged with its first
offset and stored once; sequence gaps and unknown producers are refused; INIT_PRODUCER_ID hands out distinct ids
(only on the controller, and across controller kills and full restarts); the producer state survives kill -9,
a clean restart and a leader change; the test hook really leaves produce responses unanswered."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator

import pytest
import zmq
from brokers import BrokerProcess, ClusterProcesses, wait_until
from raw_wire import RawConnection
from rill.client import Admin, protocol
from rill.client.batch import decode_batch, encode_batch, iter_batches
from rill.client.errors import (
    NotControllerError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
    error_for_code,
)

ANSWER_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.term()


def batch(producer_id: int, sequence: int, count: int = 1, epoch: int = 0) -> bytes:
    values = [b"%d-%d" % (producer_id, sequence + number) for number in range(count)]
    return encode_batch(values, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)


def produce_request(topic: str, records: bytes, acks: int = -1) -> protocol.ProduceRequest:
    return protocol.ProduceRequest(acks, 10_000, [
        protocol.TopicProduceData(topic, [protocol.PartitionProduceData(0, records)])])


def produce(connection: RawConnection, topic: str, records: bytes) -> protocol.PartitionProduceResponse:
    response = connection.request(protocol.PRODUCE, produce_request(topic, records), ANSWER_TIMEOUT_S)
    return response.topics[0].partitions[0]


def produced_at(connection: RawConnection, topic: str, records: bytes) -> int:
    """Produce with acks=all; the base offset, failing the test on an error."""
    answer = produce(connection, topic, records)
    assert answer.error_code == 0, answer.error_message
    return answer.base_offset


def init_producer_id(connection: RawConnection) -> protocol.InitProducerIdResponse:
    return connection.request(protocol.INIT_PRODUCER_ID, protocol.InitProducerIdRequest(5_000), ANSWER_TIMEOUT_S)


def new_producer_id(connection: RawConnection) -> int:
    answer = init_producer_id(connection)
    assert (answer.error_code, answer.producer_epoch) == (0, 0), answer.error_message
    return answer.producer_id


def new_id_or_none(connection: RawConnection) -> protocol.InitProducerIdResponse | None:
    """A new producer id's answer, or None while the broker answers an error (no controller yet, a Raft commit
    failing)."""
    answer = init_producer_id(connection)
    return None if answer.error_code else answer


def stored_values(connection: RawConnection, topic: str) -> list[bytes]:
    """Every committed record's value of partition 0, read as a consumer."""
    partitions = [protocol.PartitionFetch(0, 0, 1 << 20)]
    request = protocol.FetchRequest(0, 1, 1 << 20, [protocol.TopicFetch(topic, partitions)])
    data = connection.request(protocol.FETCH, request, ANSWER_TIMEOUT_S).topics[0].partitions[0].records
    return [record.value for position, _ in iter_batches(data) for record in decode_batch(data, topic, 0, position)]


def answered(connection: RawConnection, topic: str, records: bytes) -> protocol.PartitionProduceResponse | None:
    """The answer to an acks=all produce, or None while the broker answers a retriable error (a leader or a
    broker starting); any other error fails the test."""
    answer = produce(connection, topic, records)
    if answer.error_code and error_for_code(answer.error_code).retriable:
        return None
    assert answer.error_code == 0, answer.error_message
    return answer


def stored_values_of(broker: BrokerProcess, context: zmq.Context, topic: str) -> list[bytes]:
    with RawConnection(context, broker.bootstrap) as connection:
        return stored_values(connection, topic)


def create_topic(bootstrap: str, topic: str) -> None:
    with Admin(bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic, partitions=1)


# ---- one broker -----------------------------------------------------------------------------------


def test_a_retried_batch_is_acknowledged_with_its_first_offset_and_stored_once(shared_broker, context, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    with RawConnection(context, shared_broker.bootstrap) as connection:
        producer_id = new_producer_id(connection)
        first = batch(producer_id, 0, count=3)
        assert produced_at(connection, topic_name, first) == 0
        assert produced_at(connection, topic_name, encode_batch([b"plain"])) == 3
        assert produced_at(connection, topic_name, first) == 0, "the retry gets the original offset"
        assert produced_at(connection, topic_name, batch(producer_id, 3)) == 4
        assert produced_at(connection, topic_name, batch(producer_id, 3)) == 4
        assert stored_values(connection, topic_name) == [
            b"%d-0" % producer_id, b"%d-1" % producer_id, b"%d-2" % producer_id, b"plain", b"%d-3" % producer_id]


def test_a_gap_or_an_unknown_producer_is_refused_and_nothing_is_stored(shared_broker, context, topic_name):
    create_topic(shared_broker.bootstrap, topic_name)
    with RawConnection(context, shared_broker.bootstrap) as connection:
        producer_id = new_producer_id(connection)
        assert produce(connection, topic_name, batch(producer_id, 5)).error_code == UnknownProducerIdError.code
        assert produced_at(connection, topic_name, batch(producer_id, 0, count=2)) == 0
        refused = produce(connection, topic_name, batch(producer_id, 3))
        assert (refused.error_code, refused.base_offset) == (OutOfOrderSequenceError.code, -1)
        assert produced_at(connection, topic_name, batch(producer_id, 2)) == 2
        assert len(stored_values(connection, topic_name)) == 3


def test_producer_ids_are_distinct_across_blocks(shared_broker, context):
    sent = []
    with RawConnection(context, shared_broker.bootstrap) as connection:
        for _ in range(24):  # 1,200 ids, more than one block of 1,000, in rounds below the parking limit
            sent += [connection.send(protocol.INIT_PRODUCER_ID, protocol.InitProducerIdRequest(5_000))
                     for _ in range(50)]
            connection.collect(len(sent), ANSWER_TIMEOUT_S)
        answers = [protocol.decode_response_body(protocol.INIT_PRODUCER_ID.key, connection.answers[number].body)
                   for number in sent]
    assert {answer.error_code for answer in answers} == {0}
    assert len({answer.producer_id for answer in answers}) == len(sent)
    assert min(answer.producer_id for answer in answers) >= 0


def test_the_producer_state_survives_kill_9_and_a_clean_restart(broker, context, topic_name):
    create_topic(broker.bootstrap, topic_name)
    with RawConnection(context, broker.bootstrap) as connection:
        producer_id = new_producer_id(connection)
        for sequence in range(3):
            assert produced_at(connection, topic_name, batch(producer_id, sequence)) == sequence
    ids = {producer_id}
    for stop in (lambda: broker.kill(signal.SIGKILL), broker.stop):
        stop()
        broker.start()
        with RawConnection(context, broker.bootstrap) as connection:
            retried = wait_until(lambda: answered(connection, topic_name, batch(producer_id, 2)), 30,
                                 "the restarted broker to lead the partition")
            assert retried.base_offset == 2, "the retry of the last batch before the stop is a duplicate"
            end = len(stored_values(connection, topic_name))
            assert produced_at(connection, topic_name, batch(producer_id, end)) == end
            ids.add(new_producer_id(connection))
    assert len(stored_values_of(broker, context, topic_name)) == 5
    assert len(ids) == 3, "a restarted controller takes a new block of ids"


def test_the_test_hook_leaves_produce_responses_unanswered(tmp_path: Path, context, topic_name):
    broker = BrokerProcess(tmp_path / "dropping", settings={"testing_drop_produce_responses": 1.0}).start()
    try:
        create_topic(broker.bootstrap, topic_name)
        assert "WARNING rill.node: testing_drop_produce_responses=1.0" in broker.output()
        with RawConnection(context, broker.bootstrap) as connection:
            producer_id = new_producer_id(connection)
            for acks in (1, -1, 1):  # the same batch three times: each appended (or found a duplicate), never answered
                dropped = connection.send(protocol.PRODUCE, produce_request(topic_name, batch(producer_id, 0), acks))
                # Answers come in order on one connection for requests answered at once, and this broker's
                # acks=all produce completes at once (it has no followers): so once the metadata answer is
                # in, the produce's would have been before it.
                connection.request(protocol.METADATA, protocol.MetadataRequest([topic_name]), ANSWER_TIMEOUT_S)
                assert dropped not in connection.answers
            assert stored_values(connection, topic_name) == [b"%d-0" % producer_id], "stored once"
    finally:
        broker.stop()


# ---- three brokers ---------------------------------------------------------------------------------


def test_ids_and_producer_state_across_leader_and_controller_kills_and_a_full_restart(tmp_path: Path, context):
    topic = "idempotent"
    cluster = ClusterProcesses(tmp_path / "cluster", 3)
    try:
        cluster.start_all()
        [partition] = cluster.create_topic(topic)
        ids = set()
        controller = cluster.wait_for_controller()
        other = next(node for node in cluster.node_ids if node != controller)
        with RawConnection(context, cluster[other].bootstrap) as connection:
            assert init_producer_id(connection).error_code == NotControllerError.code
        with RawConnection(context, cluster[controller].bootstrap) as connection:
            producer_id = new_producer_id(connection)
        ids.add(producer_id)
        with RawConnection(context, cluster[partition.leader].bootstrap) as connection:
            assert produced_at(connection, topic, batch(producer_id, 0, count=2)) == 0
            assert produced_at(connection, topic, batch(producer_id, 2)) == 2

        cluster.kill(partition.leader)  # the new leader learnt the producer's batches as a follower
        new_leader = cluster.wait_for_leader(topic, not_in=[partition.leader]).leader
        with RawConnection(context, cluster[new_leader].bootstrap) as connection:
            retried = wait_until(lambda: answered(connection, topic, batch(producer_id, 2)), 30,
                                 "the new leader to take produces")
            assert retried.base_offset == 2, "a duplicate at the new leader"
            assert produced_at(connection, topic, batch(producer_id, 0, count=2)) == 0
            assert produced_at(connection, topic, batch(producer_id, 3)) == 3
        cluster.start(partition.leader)

        controller = cluster.wait_for_controller()
        cluster.kill(controller)
        new_controller = cluster.wait_for_controller(not_in=[controller])
        with RawConnection(context, cluster[new_controller].bootstrap) as connection:
            ids.add(wait_until(lambda: new_id_or_none(connection), 30,
                               "the new controller to hand out an id").producer_id)
        cluster.start(controller)

        cluster.stop_all()
        cluster.start_all()
        controller = cluster.wait_for_controller()
        with RawConnection(context, cluster[controller].bootstrap) as connection:
            ids.add(wait_until(lambda: new_id_or_none(connection), 30,
                               "the restarted controller to hand out an id").producer_id)
        leader = cluster.wait_for_partition(  # where the controller's preferred-leader duty leaves it
            topic, lambda p: p.leader == p.replicas[0] and sorted(p.isr) == sorted(p.replicas),
            "the preferred leader leading, every replica in sync").leader
        with RawConnection(context, cluster[leader].bootstrap) as connection:
            retried = wait_until(lambda: answered(connection, topic, batch(producer_id, 3)), 30,
                                 "the leader to answer after the restart")
            assert retried.base_offset == 3
            assert produced_at(connection, topic, batch(producer_id, 4)) == 4
            assert len(stored_values(connection, topic)) == 5
        assert len(ids) == 3
    finally:
        cluster.stop_all(timeout_s=10)
