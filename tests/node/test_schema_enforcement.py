"""Broker-side schema enforcement (``schema.validation=true``) against a real broker, and ``header_values``.

A topic bound to a subject refuses, whole, a produce whose batch has a
record without a ``schema.id`` header, or with the id of another subject's
schema, of a deleted version, of no schema at all: SchemaValidationError
names the topic, the first bad record's index and why, and nothing is
appended. Records with a live id of the subject are stored. Topics without
the setting take anything. Batches go over a raw connection, so each test
chooses exactly what one batch holds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq
from raw_wire import RawConnection
from rill.client import Admin, Consumer, JsonSchemaSerializer, Producer, TopicPartition
from rill.client import protocol
from rill.client.batch import COMPRESSION_LZ4, HEADER_SIZE, encode_batch, header_values, read_header
from rill.client.errors import InvalidConfigError, SchemaValidationError

ORDER = {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}
OTHER = {"type": "object", "properties": {"sku": {"type": "string"}}}


@pytest.fixture
def connection(shared_broker) -> Iterator[RawConnection]:
    context = zmq.Context()
    try:
        with RawConnection(context, shared_broker.bootstrap) as raw:
            yield raw
    finally:
        context.term()


@pytest.fixture
def enforced(admin: Admin, topic_name: str) -> tuple[str, str, int]:
    """A topic with schema.validation=true bound to a fresh subject holding one version; (topic, subject, id)."""
    subject = f"{topic_name}-value"
    schema_id = admin.register_schema(subject, ORDER).id
    admin.create_topic(topic_name, config={"schema.subject": subject, "schema.validation": True})
    return topic_name, subject, schema_id


def produce(connection: RawConnection, topic: str, batch: bytes) -> protocol.PartitionProduceResponse:
    request = protocol.ProduceRequest(-1, 10_000, [protocol.TopicProduceData(
        topic, [protocol.PartitionProduceData(0, batch)])])
    return connection.request(protocol.PRODUCE, request).topics[0].partitions[0]


def batch_with_ids(*ids: bytes | None, compression: int = 0) -> bytes:
    """One batch, a record per id: with header schema.id = that id (none for None)."""
    headers = [{} if value is None else {"schema.id": value} for value in ids]
    return encode_batch([b'{"order_id": %d}' % n for n in range(len(ids))], keys=[b"k"] * len(ids),
                        headers=headers, compression=compression)


def stored(bootstrap: str, topic: str) -> int:
    with Consumer(bootstrap) as consumer:
        return consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]


def assert_refused(response: protocol.PartitionProduceResponse, *fragments: str) -> None:
    assert response.error_code == SchemaValidationError.code, response
    for fragment in fragments:
        assert fragment in response.error_message, response.error_message


# ---- the broker ---------------------------------------------------------------------------------------


def test_records_with_a_live_id_of_the_subject_are_stored(connection, enforced, shared_broker):
    topic, _, schema_id = enforced
    id_bytes = b"%d" % schema_id
    assert produce(connection, topic, batch_with_ids(id_bytes, id_bytes, id_bytes)).error_code == 0
    assert produce(connection, topic, batch_with_ids(*[id_bytes] * 50, compression=COMPRESSION_LZ4)).error_code == 0
    assert stored(shared_broker.bootstrap, topic) == 53


def test_a_record_without_the_header_refuses_the_whole_batch(connection, enforced, shared_broker):
    topic, subject, schema_id = enforced
    response = produce(connection, topic, batch_with_ids(b"%d" % schema_id, b"%d" % schema_id, None))
    assert_refused(response, f"topic {topic}", f"subject {subject!r}", "record 2 has no schema.id header",
                   "nothing was appended")
    assert stored(shared_broker.bootstrap, topic) == 0


def test_a_batch_without_any_headers_is_refused(connection, enforced):
    topic, _, _ = enforced
    assert_refused(produce(connection, topic, encode_batch([b"{}"])), "record 0 has no schema.id header")


def test_an_id_of_another_subject_is_refused(admin: Admin, connection, enforced, shared_broker):
    topic, subject, _ = enforced
    other_id = admin.register_schema(f"{subject}-other", OTHER).id
    response = produce(connection, topic, batch_with_ids(b"%d" % other_id, compression=COMPRESSION_LZ4))
    assert_refused(response, f"record 0 has schema id {other_id}, of subject '{subject}-other', not of '{subject}'")
    assert stored(shared_broker.bootstrap, topic) == 0


def test_unknown_and_malformed_ids_are_refused(connection, enforced):
    topic, _, schema_id = enforced
    assert_refused(produce(connection, topic, batch_with_ids(b"%d" % schema_id, b"987654321")),
                   "record 1 has unknown schema id 987654321")
    assert_refused(produce(connection, topic, batch_with_ids(b"v1")), "record 0 has schema.id b'v1', which is not")


def test_a_deleted_version_is_refused_but_its_successor_is_taken(admin: Admin, connection, enforced, shared_broker):
    topic, subject, first_id = enforced
    second_id = admin.register_schema(subject, {**ORDER, "properties": {**ORDER["properties"],
                                                                        "note": {"type": "string"}}}).id
    assert produce(connection, topic, batch_with_ids(b"%d" % first_id)).error_code == 0
    admin.delete_schema(subject, version=1)
    assert_refused(produce(connection, topic, batch_with_ids(b"%d" % first_id)),
                   f"schema id {first_id}, version 1 of subject '{subject}', which is deleted")
    assert produce(connection, topic, batch_with_ids(b"%d" % second_id)).error_code == 0
    assert stored(shared_broker.bootstrap, topic) == 2


def test_the_producer_sees_the_refusal(admin: Admin, enforced, shared_broker):
    topic, _, _ = enforced
    with Producer(shared_broker.bootstrap, linger_ms=0) as producer:
        with pytest.raises(SchemaValidationError, match="has no schema.id header"):
            producer.send(topic, b'{"order_id": 1}').result(10)


def test_the_json_schema_serializer_satisfies_the_broker(admin: Admin, enforced, shared_broker):
    topic, subject, _ = enforced
    with Producer(shared_broker.bootstrap, value_serializer=JsonSchemaSerializer(admin, subject)) as producer:
        for order_id in range(10):
            producer.send(topic, {"order_id": order_id})
        producer.flush(10)
    assert stored(shared_broker.bootstrap, topic) == 10


def test_topics_without_validation_take_anything(admin: Admin, connection, topic_name, shared_broker):
    subject = f"{topic_name}-value"
    admin.register_schema(subject, ORDER)
    admin.create_topic(topic_name, config={"schema.subject": subject})  # bound, but schema.validation=false
    assert produce(connection, topic_name, batch_with_ids(None, b"nonsense")).error_code == 0
    assert stored(shared_broker.bootstrap, topic_name) == 2


def test_validation_needs_a_subject(admin: Admin, topic_name):
    with pytest.raises(InvalidConfigError, match="schema.validation=true needs schema.subject"):
        admin.create_topic(topic_name, config={"schema.validation": "true"})
    with pytest.raises(InvalidConfigError, match="schema.subject"):
        admin.create_topic(topic_name, config={"schema.subject": "x" * 300})
    assert topic_name not in admin.list_topics()


def test_the_topic_config_shows_the_settings(admin: Admin, enforced):
    topic, subject, _ = enforced
    config = admin.describe_topic(topic).config
    assert (config["schema.subject"], config["schema.validation"]) == (subject, "true")


# ---- header_values (client/batch.py) ------------------------------------------------------------------------


def values_of(batch: bytes, name: str = "schema.id") -> list:
    header = read_header(batch)
    return header_values(header, memoryview(batch)[HEADER_SIZE:header.size], name)


def test_header_values_of_the_usual_batch():
    assert values_of(batch_with_ids(b"1", b"2", b"3")) == [b"1", b"2", b"3"]
    assert values_of(batch_with_ids(*[b"7"] * 100, compression=COMPRESSION_LZ4)) == [b"7"] * 100


def test_header_values_with_other_and_missing_headers():
    batch = encode_batch([b"a", b"b", b"c", b"d"], headers=[
        {"trace": b"t1", "schema.id": b"5"}, {}, {"schema.id": b"6", "trace": b"t3"}, {"trace": b"t4"}])
    assert values_of(batch) == [b"5", None, b"6", None]
    assert values_of(batch, "trace") == [b"t1", None, b"t3", b"t4"]
    assert values_of(encode_batch([b"x", b"y"])) == [None, None]
