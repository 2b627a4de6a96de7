"""Serializers and deserializers against a real broker: objects in at ``send``, objects out of ``poll``.

The ready-made JSON and msgspec ones, kafka-python's one-argument callables,
headers a Serializer adds, and every way a serializer can fail: the failure
is a SerializationError at the call and nothing reaches the broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest
from rill.client import (
    Consumer,
    Deserializer,
    JsonDeserializer,
    JsonSerializer,
    MsgspecDeserializer,
    MsgspecSerializer,
    Producer,
    Serializer,
    TopicPartition,
)
from rill.client.errors import InvalidConfigError, RecordTooLargeError, SerializationError
from rill.client.partitioner import partition_for_key


class Order(msgspec.Struct, frozen=True):
    order_id: int
    amount_cents: int
    note: str = ""


class ContentTypeSerializer(Serializer):
    """JSON that stamps a ``content-type`` header, and remembers what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, bytes]]] = []

    def serialize(self, topic: str, data, headers: dict[str, bytes]) -> bytes:
        self.seen.append((topic, dict(headers)))
        headers["content-type"] = b"application/json"
        return json.dumps(data).encode()


class ContentTypeDeserializer(Deserializer):
    """Whatever the record's ``content-type`` header and topic say, with the data."""

    def deserialize(self, topic: str, data: bytes, headers) -> tuple[str, bytes, object]:
        return topic, headers["content-type"], json.loads(data)


def read(bootstrap: str, topic: str, expected: int, partitions: int = 1, **settings) -> list:
    """Every record of the topic from the start, once ``expected`` came (or after about 20 s)."""
    records: list = []
    with Consumer(bootstrap, auto_offset_reset="earliest", **settings) as consumer:
        consumer.assign([TopicPartition(topic, partition) for partition in range(partitions)])
        for _ in range(100):
            records += consumer.poll(0.2)
            if len(records) >= expected:
                break
    return records


def stored_count(bootstrap: str, topic: str, partitions: int = 1) -> int:
    with Consumer(bootstrap) as consumer:
        ends = consumer.end_offsets([TopicPartition(topic, partition) for partition in range(partitions)])
    return sum(ends.values())


def test_json_round_trip_of_dicts(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    events = [{"type": "OrderCreated", "order_id": n, "lines": [{"sku": "A-1", "quantity": n}], "paid": n % 2 == 0}
              for n in range(50)]
    with Producer(shared_broker.bootstrap, key_serializer=JsonSerializer(), value_serializer=JsonSerializer()) as p:
        for event in events:
            p.send(topic_name, event, key={"order_id": event["order_id"]})
        p.send(topic_name, None, key={"order_id": 0}).result(10)  # a tombstone stays a tombstone
    records = read(shared_broker.bootstrap, topic_name, 51,
                   key_deserializer=JsonDeserializer(), value_deserializer=JsonDeserializer())
    assert [record.value for record in records] == [*events, None]
    assert [record.key for record in records] == [{"order_id": n} for n in range(50)] + [{"order_id": 0}]
    raw = read(shared_broker.bootstrap, topic_name, 51)
    assert raw[0].value == b'{"type":"OrderCreated","order_id":0,"lines":[{"sku":"A-1","quantity":0}],"paid":true}'
    assert raw[-1].value is None


def test_msgspec_struct_round_trip(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, value_serializer=MsgspecSerializer(Order)) as producer:
        producer.send(topic_name, Order(1, 1250, "first"))
        producer.send(topic_name, {"order_id": 2, "amount_cents": 990})  # checked and converted to an Order
        with pytest.raises(SerializationError, match="amount_cents") as raised:
            producer.send(topic_name, {"order_id": 3, "amount_cents": "a lot"})
        assert isinstance(raised.value.__cause__, msgspec.ValidationError)
        producer.flush()
    with Producer(shared_broker.bootstrap, value_serializer=MsgspecSerializer()) as producer:  # no type: unchecked
        producer.send(topic_name, Order(4, 10, "untyped")).result(10)
    records = read(shared_broker.bootstrap, topic_name, 3, value_deserializer=MsgspecDeserializer(Order))
    assert [record.value for record in records] == [Order(1, 1250, "first"), Order(2, 990), Order(4, 10, "untyped")]
    assert stored_count(shared_broker.bootstrap, topic_name) == 3, "the bad dict was not sent"


def test_json_serializer_knows_more_than_plain_json():
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    encoded = JsonSerializer().serialize("t", {"at": moment, "order": Order(5, 7)}, {})
    assert JsonDeserializer()(encoded) == {"at": "2024-05-01T12:30:00Z",
                                            "order": {"order_id": 5, "amount_cents": 7, "note": ""}}


def test_kafka_python_callables(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=3)
    with Producer(shared_broker.bootstrap, key_serializer=str.encode,
                  value_serializer=lambda v: json.dumps(v).encode()) as producer:
        futures = {n: producer.send(topic_name, {"n": n}, key=f"customer-{n % 4}") for n in range(40)}
        stored = {n: future.result(10) for n, future in futures.items()}
    for n, metadata in stored.items():
        assert metadata.partition == partition_for_key(f"customer-{n % 4}".encode(), 3), "keyed by the serialized key"
    records = read(shared_broker.bootstrap, topic_name, 40, partitions=3, key_deserializer=bytes.decode,
                   value_deserializer=json.loads)
    assert sorted((record.key, record.value["n"]) for record in records) == sorted(
        (f"customer-{n % 4}", n) for n in range(40))


def test_headers_a_serializer_adds_are_sent(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    serializer = ContentTypeSerializer()
    given = {"trace-id": b"abc"}
    with Producer(shared_broker.bootstrap, value_serializer=serializer) as producer:
        producer.send(topic_name, {"n": 1}, headers=given)
        producer.send(topic_name, {"n": 2}, headers=[("trace-id", b"def")])
        producer.send(topic_name, {"n": 3})
        producer.flush()
    assert given == {"trace-id": b"abc"}, "the caller's headers are not changed"
    assert serializer.seen == [(topic_name, {"trace-id": b"abc"}), (topic_name, {"trace-id": b"def"}), (topic_name, {})]
    records = read(shared_broker.bootstrap, topic_name, 3)
    assert [dict(record.headers) for record in records] == [
        {"trace-id": b"abc", "content-type": b"application/json"},
        {"trace-id": b"def", "content-type": b"application/json"},
        {"content-type": b"application/json"}]
    decoded = read(shared_broker.bootstrap, topic_name, 3, value_deserializer=ContentTypeDeserializer())
    assert [record.value for record in decoded] == [(topic_name, b"application/json", {"n": n}) for n in (1, 2, 3)]


def test_added_headers_count_in_the_record_size(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)

    class BigHeader(Serializer):
        def serialize(self, topic, data, headers):
            headers["blob"] = b"x" * 2_000
            return data

    with Producer(shared_broker.bootstrap, max_request_size=1_000, value_serializer=BigHeader()) as producer:
        with pytest.raises(RecordTooLargeError):
            producer.send(topic_name, b"small")
    assert stored_count(shared_broker.bootstrap, topic_name) == 0


def failing(data):
    raise ValueError(f"cannot take {data!r}")


class FailsAfterAddingAHeader(Serializer):
    def serialize(self, topic, data, headers):
        headers["half-done"] = b"1"
        raise KeyError("missing field")


@pytest.mark.parametrize("settings, field, cause", [
    ({"value_serializer": failing}, "value", ValueError),
    ({"key_serializer": failing}, "key", ValueError),
    ({"value_serializer": FailsAfterAddingAHeader()}, "value", KeyError),
    ({"value_serializer": JsonSerializer()}, "value", TypeError),  # an object() is not JSON
], ids=["value", "key", "after-adding-a-header", "not-json"])
def test_a_failing_serializer_raises_serialization_error_and_sends_nothing(admin, shared_broker, topic_name,
                                                                           settings, field, cause):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, **settings) as producer:
        with pytest.raises(SerializationError) as raised:
            producer.send(topic_name, object(), key=object())
        assert isinstance(raised.value.__cause__, cause)
        message = str(raised.value)
        assert f"the {field} of a record for topic {topic_name!r}" in message and cause.__name__ in message
        producer.flush()
    assert stored_count(shared_broker.bootstrap, topic_name) == 0
    with Producer(shared_broker.bootstrap) as producer:  # the producer is closed: nothing of it can come later
        producer.send(topic_name, b"marker").result(10)
    assert [(record.offset, record.value) for record in read(shared_broker.bootstrap, topic_name, 1)] == [
        (0, b"marker")]


@pytest.mark.parametrize("serializer, problem", [
    (lambda v: "a str", "returned str"),
    (lambda v: {"a": 1}, "returned dict"),
    (lambda v: 7, "returned int"),
], ids=["str", "dict", "int"])
def test_a_serializer_result_that_is_not_bytes_is_refused(admin, shared_broker, topic_name, serializer, problem):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, value_serializer=serializer) as producer:
        with pytest.raises(SerializationError, match=problem):
            producer.send(topic_name, "v")
        producer.flush()
    assert stored_count(shared_broker.bootstrap, topic_name) == 0


def test_a_bad_header_added_by_a_serializer_is_refused(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)

    class StrHeader(Serializer):
        def serialize(self, topic, data, headers):
            headers["schema"] = "not bytes"
            return data

    with Producer(shared_broker.bootstrap, value_serializer=StrHeader()) as producer:
        with pytest.raises(SerializationError, match="added a bad header") as raised:
            producer.send(topic_name, b"v")
        assert isinstance(raised.value.__cause__, TypeError)
    assert stored_count(shared_broker.bootstrap, topic_name) == 0


def test_bytes_like_results_are_copied_and_none_is_never_serialized(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    reused = bytearray(b"first")
    calls: list = []

    def into_buffer(value):
        calls.append(value)
        reused[:] = value.encode()
        return reused

    with Producer(shared_broker.bootstrap, value_serializer=into_buffer, key_serializer=into_buffer) as producer:
        producer.send(topic_name, "one")
        producer.send(topic_name, "two", key=None)
        producer.send(topic_name, None, key="k").result(10)
    assert calls == ["one", "two", "k"], "a None key or value never reaches the serializer"
    records = read(shared_broker.bootstrap, topic_name, 3)
    assert [(record.key, record.value) for record in records] == [(None, b"one"), (None, b"two"), (b"k", None)]


@pytest.mark.parametrize("settings", [
    {"value_serializer": 42},
    {"key_serializer": "json"},
    {"value_serializer": JsonDeserializer()},
], ids=["int", "str", "a-deserializer"])
def test_a_bad_serializer_is_invalid_config(shared_broker, settings):
    with pytest.raises(InvalidConfigError, match=next(iter(settings))):
        Producer(shared_broker.bootstrap, **settings)


@pytest.mark.parametrize("settings", [
    {"value_deserializer": b"json"},
    {"key_deserializer": 1.5},
    {"value_deserializer": JsonSerializer()},
], ids=["bytes", "float", "a-serializer"])
def test_a_bad_deserializer_is_invalid_config(shared_broker, settings):
    with pytest.raises(InvalidConfigError, match=next(iter(settings))):
        Consumer(shared_broker.bootstrap, **settings)


def test_msgspec_types_it_cannot_decode_are_invalid_config():
    with pytest.raises(InvalidConfigError, match="MsgspecDeserializer"):
        MsgspecDeserializer(object())
    with pytest.raises(InvalidConfigError, match="MsgspecSerializer"):
        MsgspecSerializer(42)
