"""Bad input against a real broker: a typed error at the client, nothing stored changes, the broker serves on."""

from __future__ import annotations

import struct

import msgspec
import pytest
import zmq
from rill.client import Admin, Consumer, Producer, TopicPartition, protocol
from rill.client.batch import encode_batch
from rill.client.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidTopicError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicError,
    UnsupportedVersionError,
    error_for_code,
)
from rill.client.network import NetworkClient


@pytest.fixture
def raw_socket(shared_broker):
    """A bare DEALER socket, to send frames the client library would never send."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(f"tcp://{shared_broker.bootstrap}")
    yield sock
    sock.close()
    context.term()


@pytest.fixture
def network(shared_broker):
    context = zmq.Context()
    client = NetworkClient(context, "bad-input-test")
    yield client
    client.close()
    context.term()


def raw_round_trip(sock: zmq.Socket, *frames: bytes) -> protocol.ResponseEnvelope:
    sock.send_multipart(frames)
    return protocol.decode_response_envelope(sock.recv())


def produce_raw(network: NetworkClient, address: str, topic: str, records: bytes, partition: int = 0):
    request = protocol.ProduceRequest(-1, 5_000, [
        protocol.TopicProduceData(topic, [protocol.PartitionProduceData(partition, records)])
    ])
    response = network.request(address, protocol.PRODUCE, request, 10_000)
    return response.topics[0].partitions[0]


def read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    values: list[bytes] = []
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest") as consumer:
        for _ in range(100):
            values += [record.value for record in consumer.poll(0.2)]
            if len(values) >= expected:
                break
    return values


def assert_still_serving(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """The broker answers, and the topic holds exactly what it held before."""
    assert read_all(bootstrap, topic, len(values)) == values


@pytest.fixture
def topic_with_data(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1, config={"max.message.bytes": 10_000})
    values = [b"kept-%d" % i for i in range(10)]
    with Producer(shared_broker.bootstrap, acks="all") as producer:
        for value in values:
            producer.send(topic_name, value)
    return topic_name, values


def test_garbage_frame_gets_invalid_request_and_broker_serves_on(raw_socket, shared_broker, topic_with_data):
    topic, values = topic_with_data
    envelope = raw_round_trip(raw_socket, b"\xff\x00garbage")
    assert envelope.correlation_id == -1
    assert isinstance(error_for_code(envelope.error_code, envelope.error_message), InvalidRequestError)
    assert_still_serving(shared_broker.bootstrap, topic, values)


def test_two_frames_in_one_message_are_refused(raw_socket):
    envelope = raw_round_trip(raw_socket, b"one", b"two")
    assert isinstance(error_for_code(envelope.error_code), InvalidRequestError)


def test_unknown_request_type_gets_unsupported_version(raw_socket):
    frame = msgspec.msgpack.encode([99, 0, 7, "test", None])
    envelope = raw_round_trip(raw_socket, frame)
    assert envelope.correlation_id == 7
    assert isinstance(error_for_code(envelope.error_code, envelope.error_message), UnsupportedVersionError)


def test_unsupported_version_is_refused(raw_socket):
    frame = protocol.encode_request(protocol.METADATA, 8, protocol.MetadataRequest(None), version=9)
    envelope = raw_round_trip(raw_socket, frame)
    assert envelope.correlation_id == 8
    assert isinstance(error_for_code(envelope.error_code), UnsupportedVersionError)


def test_body_of_the_wrong_shape_is_invalid_request(raw_socket):
    frame = msgspec.msgpack.encode([protocol.PRODUCE.key, 0, 9, "test", msgspec.Raw(msgspec.msgpack.encode(["x"]))])
    envelope = raw_round_trip(raw_socket, frame)
    assert envelope.correlation_id == 9
    assert isinstance(error_for_code(envelope.error_code), InvalidRequestError)


def test_wrong_crc_batch_is_refused_and_nothing_is_stored(network, shared_broker, topic_with_data):
    topic, values = topic_with_data
    records = bytearray(encode_batch([b"evil"], None, [1]))
    struct.pack_into(">I", records, 17, 0xDEADBEEF)
    result = produce_raw(network, shared_broker.bootstrap, topic, bytes(records))
    assert isinstance(error_for_code(result.error_code, result.error_message), CorruptRecordError)
    assert_still_serving(shared_broker.bootstrap, topic, values)


def test_truncated_batch_is_refused(network, shared_broker, topic_with_data):
    topic, values = topic_with_data
    records = encode_batch([b"a", b"b"], None, [1, 2])
    result = produce_raw(network, shared_broker.bootstrap, topic, records[:-3])
    assert isinstance(error_for_code(result.error_code), CorruptRecordError)
    assert_still_serving(shared_broker.bootstrap, topic, values)


def test_batch_over_max_message_bytes_is_refused(shared_broker, topic_with_data):
    topic, values = topic_with_data
    with Producer(shared_broker.bootstrap, compression="none") as producer:
        future = producer.send(topic, b"x" * 20_000)
        with pytest.raises(RecordTooLargeError):
            future.result(timeout=10)
    assert_still_serving(shared_broker.bootstrap, topic, values)


def test_record_over_max_request_size_is_refused_at_send(shared_broker, topic_with_data):
    topic, _ = topic_with_data
    with Producer(shared_broker.bootstrap, max_request_size=1_000) as producer:
        with pytest.raises(RecordTooLargeError):
            producer.send(topic, b"x" * 2_000)


def test_unknown_topic(shared_broker, network):
    with Producer(shared_broker.bootstrap, max_block_ms=5_000) as producer:
        with pytest.raises(UnknownTopicError):
            producer.send("no-such-topic", b"v")
    with pytest.raises(UnknownTopicError):
        Consumer(shared_broker.bootstrap, topics=["no-such-topic"])
    result = produce_raw(network, shared_broker.bootstrap, "no-such-topic", encode_batch([b"v"], None, [1]))
    assert isinstance(error_for_code(result.error_code), UnknownTopicError)


def test_unknown_partition(shared_broker, topic_with_data):
    topic, _ = topic_with_data
    with Producer(shared_broker.bootstrap) as producer:
        with pytest.raises(UnknownTopicError):
            producer.send(topic, b"v", partition=5)


def test_offset_out_of_range(shared_broker, topic_with_data, network):
    topic, values = topic_with_data
    with Consumer(shared_broker.bootstrap, auto_offset_reset="none") as consumer:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        with pytest.raises(OffsetOutOfRangeError, match="beyond the log end"):
            consumer.seek(partition, 1_000_000)
        with pytest.raises(OffsetOutOfRangeError):
            consumer.seek(partition, -1)
        consumer.seek(partition, len(values))  # the log end itself is a valid position
        assert consumer.position(partition) == len(values)
    request = protocol.FetchRequest(
        0, 1, 1 << 20, [protocol.TopicFetch(topic, [protocol.PartitionFetch(0, -5, 1 << 20)])])
    answer = network.request(shared_broker.bootstrap, protocol.FETCH, request, 10_000).topics[0].partitions[0]
    assert isinstance(error_for_code(answer.error_code), OffsetOutOfRangeError)
    assert_still_serving(shared_broker.bootstrap, topic, values)


def test_no_position_with_reset_error_is_a_typed_error(shared_broker, topic_with_data):
    topic, _ = topic_with_data
    with Consumer(shared_broker.bootstrap, auto_offset_reset="error") as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        with pytest.raises(NoOffsetForPartitionError):
            consumer.poll(0.1)


@pytest.mark.parametrize("config, error", [
    ({"retention.ms": "soon"}, InvalidConfigError),
    ({"no.such.setting": "1"}, InvalidConfigError),
    ({"cleanup.policy": "shred"}, InvalidConfigError),
    ({"segment.bytes": 1}, InvalidConfigError),
    ({"unclean.leader.election.enable": "maybe"}, InvalidConfigError),
])
def test_bad_topic_config(admin, topic_name, config, error):
    with pytest.raises(error):
        admin.create_topic(topic_name, partitions=1, config=config)
    assert topic_name not in admin.list_topics()


@pytest.mark.parametrize("name", ["", "has space", "slash/name", ".", "..", "x" * 250])
def test_bad_topic_name(admin, name):
    with pytest.raises(InvalidTopicError):
        admin.create_topic(name)


def test_bad_partition_count_and_replication_factor(admin, topic_name):
    with pytest.raises(InvalidPartitionsError):
        admin.create_topic(topic_name, partitions=0)
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topic(topic_name, partitions=1, replication_factor=2)
    assert topic_name not in admin.list_topics()


def test_duplicate_topic(admin, topic_name):
    admin.create_topic(topic_name, partitions=2)
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topic(topic_name, partitions=1)
    assert len(admin.describe_topic(topic_name).partitions) == 2


def test_delete_unknown_topic(admin):
    with pytest.raises(UnknownTopicError):
        admin.delete_topic("never-created")


@pytest.mark.parametrize("settings", [
    {"acks": 2}, {"acks": "most"}, {"compression": "zstd"}, {"linger_ms": -1}, {"batch_size": 0},
])
def test_bad_producer_settings(shared_broker, settings):
    with pytest.raises(InvalidConfigError):
        Producer(shared_broker.bootstrap, **settings)


@pytest.mark.parametrize("bootstrap", ["", "nohost", "host:notaport", "host:70000"])
def test_bad_bootstrap(bootstrap):
    with pytest.raises(InvalidConfigError):
        Admin(bootstrap)


def test_bad_consumer_settings(shared_broker):
    with pytest.raises(InvalidConfigError):
        Consumer(shared_broker.bootstrap, auto_offset_reset="middle")
