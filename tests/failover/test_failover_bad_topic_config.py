"""A stored topic config that brokers cannot apply, and the internal offsets topic created by a broker.

A config committed before the controller validated configs as brokers apply
them (``segment.bytes=4294967296`` passed; every broker start then failed)
must not stop a broker: it starts, serves every other topic, and keeps that
topic's partitions offline (StorageError) until the topic is deleted.

Such a config cannot be created any more, so the test writes it where an
older version left it: it stops the broker and rewrites the topic's
create command in the broker's Raft journal (pysyncobj's FileJournal), which
the broker replays at its next start, as it would an old journal.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import zmq
from brokers import BrokerProcess, ClusterProcesses, read_partition, wait_until
from pysyncobj.journal import FileJournal
from rill.client import Admin, Producer, protocol
from rill.client.batch import encode_batch
from rill.client.errors import InvalidTopicError, StorageError, error_for_code
from rill.client.network import NetworkClient
from rill.node.coordinator.offset_records import OFFSETS_PARTITIONS
from rill.node.metadata.state import TopicState

REGULAR_COMMAND = b"\x00"  # pysyncobj's first byte of a replicated call in the journal


def store_topic_config(storage_dir: Path, topic: str, changes: dict[str, str]) -> None:
    """Rewrite a stopped broker's Raft journal so that ``topic`` was created with ``changes`` in its config."""
    assert not (storage_dir / "raft.dump").exists(), "the test expects every command in the journal, not a dump"
    journal = FileJournal(str(storage_dir / "raft.journal"))
    try:
        entries = [journal[index] for index in range(len(journal))]
        rewritten = [(_with_config(command, topic, changes), index, term) for command, index, term in entries]
        assert rewritten != entries, f"no create command of {topic} in the journal"
        journal.clear()
        for entry in rewritten:
            journal.add(*entry)
    finally:
        journal._destroy()


def _with_config(command: bytes, topic: str, changes: dict[str, str]) -> bytes:
    if command[:1] != REGULAR_COMMAND:
        return command
    call = pickle.loads(command[1:])
    if not isinstance(call, tuple):  # a call without arguments is stored as its method id alone
        return command
    arguments = call[1]
    if not (arguments and isinstance(arguments[0], TopicState) and arguments[0].name == topic):
        return command
    state = arguments[0]
    changed = TopicState(state.name, state.topic_id, {**state.config, **changes}, state.partitions)
    return REGULAR_COMMAND + pickle.dumps((call[0], (changed, *arguments[1:]), *call[2:]))


def request_raw(address: str, api: protocol.Api, body: object):
    context = zmq.Context()
    network = NetworkClient(context, "bad-topic-config-test")
    try:
        return network.request(address, api, body, 10_000)
    finally:
        network.close()
        context.term()


def produce_error(address: str, topic: str) -> Exception | None:
    request = protocol.ProduceRequest(-1, 5_000, [protocol.TopicProduceData(
        topic, [protocol.PartitionProduceData(0, encode_batch([b"probe"]))])])
    answer = request_raw(address, protocol.PRODUCE, request).topics[0].partitions[0]
    return error_for_code(answer.error_code, answer.error_message) if answer.error_code else None


def fetch_error(address: str, topic: str) -> Exception | None:
    request = protocol.FetchRequest(0, 1, 1_000_000, [protocol.TopicFetch(
        topic, [protocol.PartitionFetch(0, 0, 1_000_000)])])
    answer = request_raw(address, protocol.FETCH, request).topics[0].partitions[0]
    return error_for_code(answer.error_code, answer.error_message) if answer.error_code else None


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    with Producer(bootstrap, acks="all") as producer:
        for future in [producer.send(topic, value) for value in values]:
            future.result(30)


@pytest.mark.parametrize("bad", [{"segment.bytes": "4294967296"}, {"segment.index.bytes": "8"}])
def test_failover_broker_starts_with_a_bad_stored_topic_config(tmp_path: Path, bad: dict[str, str]):
    broker = BrokerProcess(tmp_path / "broker").start()
    try:
        with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
            admin.create_topic("kept")
            admin.create_topic("bad")
        values = [b"%d" % number for number in range(20)]
        produce(broker.bootstrap, "kept", values)
        produce(broker.bootstrap, "bad", [b"old"])
        broker.stop()
        store_topic_config(broker.storage_dir, "bad", bad)

        broker.start()
        assert [record.value for record in read_partition(broker.bootstrap, "kept", min_end_offset=20)] == values
        for error in (produce_error(broker.bootstrap, "bad"), fetch_error(broker.bootstrap, "bad")):
            assert isinstance(error, StorageError) and "offline" in str(error), error
        status = request_raw(broker.bootstrap, protocol.NODE_STATUS, protocol.NodeStatusRequest())
        assert status.offline_partitions == ["bad-0"], "the broker reports the partition offline"
        assert "topic bad stays offline on this broker" in broker.output()
        assert "leaving the log of bad-0 closed" in broker.output()
        assert (broker.partition_dir("bad", 0)).is_dir(), "its records stay on disk"

        with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
            admin.create_topic("after")
            admin.delete_topic("bad")
            wait_until(lambda: not broker.partition_dir("bad", 0).exists(), 30, "the offline topic's log deleted")
            admin.create_topic("bad")
        produce(broker.bootstrap, "after", [b"new"])
        produce(broker.bootstrap, "bad", [b"new"])
        assert [record.value for record in read_partition(broker.bootstrap, "bad", min_end_offset=1)] == [b"new"], (
            "the re-created topic does not adopt the deleted one's records")
    finally:
        broker.stop()


def test_failover_offsets_topic_created_through_a_non_controller(cluster: ClusterProcesses):
    """The coordinator of a broker that is not the controller creates __consumer_offsets through the
    broker-only CREATE_INTERNAL_TOPIC; clients can neither create nor delete it."""
    controller = cluster.wait_for_controller()
    other = next(node_id for node_id in cluster.node_ids if node_id != controller)
    with cluster.admin() as admin:
        with pytest.raises(InvalidTopicError):
            admin.create_topic(protocol.OFFSETS_TOPIC, partitions=1)

    def coordinator_found() -> bool:
        request = protocol.FindCoordinatorRequest("bad-topic-config-group")
        return request_raw(cluster[other].bootstrap, protocol.FIND_COORDINATOR, request).error_code == 0

    wait_until(coordinator_found, 30, f"broker {other} to create the offsets topic and find a coordinator")
    wait_until(lambda: f"created {protocol.OFFSETS_TOPIC}" in cluster.output(other), 10,
               f"broker {other} (not the controller) to log that it created {protocol.OFFSETS_TOPIC}")
    with cluster.admin() as admin:
        assert len(admin.describe_topic(protocol.OFFSETS_TOPIC).partitions) == OFFSETS_PARTITIONS
        with pytest.raises(InvalidTopicError):
            admin.delete_topic(protocol.OFFSETS_TOPIC)
        assert protocol.OFFSETS_TOPIC in admin.list_topics()
