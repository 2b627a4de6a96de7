"""The schema registry against a real broker: Admin calls, the JSON-schema serializer and deserializer.

Registering, reading, listing, checking and deleting versions; the same
schema twice; incompatible, invalid and oversized schemas refused with a
typed error and nothing registered; soft and permanent deletes; then the
serializer (a value that fails its schema raises at ``send`` and nothing
reaches the broker; a good one carries its ``schema.id``) and the
deserializer (round trip, unknown and missing ids). Each test uses its own
subject and topic on the shared broker.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rill.client import (
    Admin,
    CompatibilityReport,
    Consumer,
    JsonSchemaDeserializer,
    JsonSchemaSerializer,
    Producer,
    SchemaVersion,
    TopicPartition,
)
from rill.client.errors import (
    DeserializationError,
    IncompatibleSchemaError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidSchemaError,
    InvalidSubjectError,
    SchemaNotFoundError,
    SchemaTooLargeError,
    RillError,
    SerializationError,
    UnknownServerError,
)

ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "integer"}, "amount_cents": {"type": "integer", "minimum": 0}},
    "required": ["order_id", "amount_cents"],
}
ORDER_WITH_CURRENCY = {**ORDER, "properties": {**ORDER["properties"], "currency": {"type": "string"}}}
ORDER_REQUIRING_CURRENCY = {**ORDER_WITH_CURRENCY, "required": [*ORDER["required"], "currency"]}


@pytest.fixture
def subject(topic_name: str) -> str:
    return f"{topic_name}-value"


def read(bootstrap: str, topic: str, expected: int, **settings) -> list:
    """The topic's records from the start, once ``expected`` came (or after about 20 s)."""
    records: list = []
    with Consumer(bootstrap, auto_offset_reset="earliest", **settings) as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        for _ in range(100):
            records += consumer.poll(0.2)
            if len(records) >= expected:
                break
    return records


def stored_count(bootstrap: str, topic: str) -> int:
    with Consumer(bootstrap) as consumer:
        return consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]


# ---- registering and reading ------------------------------------------------------------------


def test_register_get_list_and_check(admin: Admin, subject: str):
    first = admin.register_schema(subject, ORDER, compatibility="BACKWARD")
    assert first == SchemaVersion(subject, 1, first.id) and first.id >= 1
    assert admin.get_schema(subject, version="latest") == SchemaVersion(subject, 1, first.id, ORDER)
    second = admin.register_schema(subject, ORDER_WITH_CURRENCY)
    assert (second.version, second.id > first.id) == (2, True)
    assert admin.get_schema(subject, version=1).schema == ORDER
    assert admin.get_schema(subject).schema == ORDER_WITH_CURRENCY
    assert admin.get_schema_by_id(second.id) == SchemaVersion(subject, 2, second.id, ORDER_WITH_CURRENCY)
    assert subject in admin.list_subjects()
    assert admin.list_schema_versions(subject) == [1, 2]
    assert admin.get_compatibility(subject) == "BACKWARD"
    report = admin.check_compatibility(subject, ORDER_REQUIRING_CURRENCY)
    assert report == CompatibilityReport(False, ["properties.currency: required in the new schema but optional in "
                                                 "the old one (old records may lack it)"], "BACKWARD", 2)
    assert admin.list_schema_versions(subject) == [1, 2], "a check registers nothing"


def test_the_same_schema_twice_gives_the_same_version_and_id(admin: Admin, subject: str):
    first = admin.register_schema(subject, ORDER)
    again = admin.register_schema(subject, json.loads(json.dumps(ORDER, indent=2)))  # key order and spacing aside
    assert again == first
    assert admin.list_schema_versions(subject) == [1]
    elsewhere = admin.register_schema(f"{subject}-copy", ORDER)
    assert (elsewhere.version, elsewhere.id) == (1, first.id), "ids are global: one schema, one id"


def test_incompatible_schema_is_refused_with_what_breaks(admin: Admin, subject: str):
    admin.register_schema(subject, ORDER)
    with pytest.raises(IncompatibleSchemaError) as refused:
        admin.register_schema(subject, ORDER_REQUIRING_CURRENCY)
    assert refused.value.messages == ["properties.currency: new required property (old records lack it)"]
    assert "not BACKWARD compatible with version 1" in str(refused.value)
    assert admin.list_schema_versions(subject) == [1]


def test_compatibility_mode_is_set_by_register_or_set_compatibility(admin: Admin, subject: str):
    admin.register_schema(subject, ORDER, compatibility="FORWARD")
    assert admin.get_compatibility(subject) == "FORWARD"
    assert admin.register_schema(subject, ORDER_REQUIRING_CURRENCY).version == 2  # old readers ignore it
    with pytest.raises(IncompatibleSchemaError, match="not FORWARD compatible"):
        admin.register_schema(subject, ORDER_WITH_CURRENCY)  # old (version 2) readers require currency
    admin.set_compatibility(subject, "none")
    assert admin.get_compatibility(subject) == "NONE"
    assert admin.register_schema(subject, {"type": "string"}).version == 3
    again = admin.register_schema(subject, ORDER, compatibility="FULL")  # held already: its version, a new mode
    assert again.version == 1 and admin.get_compatibility(subject) == "FULL"
    with pytest.raises(IncompatibleSchemaError, match="not FULL compatible with version 3"):
        admin.register_schema(subject, {"type": "integer"})


def test_check_against_a_subject_without_versions_is_compatible(admin: Admin, subject: str):
    assert admin.check_compatibility(subject, ORDER) == CompatibilityReport(True, [], "BACKWARD", None)
    assert admin.check_compatibility(subject, ORDER, compatibility="FULL").mode == "FULL"


@pytest.mark.parametrize("schema", [
    ["not", "an", "object"], "just text", 7, {"type": "no-such-type"}, {"minimum": "zero"},
    {"$ref": "http://example.com/schema.json"}, {"$ref": "file:///etc/passwd"}, {"properties": {"a": {"pattern": "("}}},
    {"a": {1, 2}}, {"a": float("nan")},
])
def test_invalid_schema_is_refused(admin: Admin, subject: str, schema):
    with pytest.raises(InvalidSchemaError):
        admin.register_schema(subject, schema)
    with pytest.raises(InvalidSchemaError):
        admin.check_compatibility(subject, schema)
    with pytest.raises(SchemaNotFoundError):
        admin.list_schema_versions(subject)


def test_schema_nested_too_deep_is_refused(admin: Admin, subject: str):
    deep: dict = {"type": "string"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(InvalidSchemaError, match="deeper than 64 levels"):
        admin.register_schema(subject, deep)


def test_schema_over_64_kib_is_refused(admin: Admin, subject: str):
    huge = {"type": "object", "properties": {f"field_{n:05}": {"type": "string"} for n in range(4000)}}
    with pytest.raises(SchemaTooLargeError, match="over 65536"):
        admin.register_schema(subject, huge)
    fits = {"type": "object", "properties": {f"field_{n:05}": {"type": "string"} for n in range(2000)}}
    assert admin.register_schema(subject, fits).version == 1


@pytest.mark.parametrize("name", ["", "x" * 256, "line\nbreak", "tab\there"])
def test_bad_subject_names_are_refused(admin: Admin, name: str):
    with pytest.raises(InvalidSubjectError):
        admin.register_schema(name, ORDER)


def test_bad_arguments_raise_at_the_call(admin: Admin, subject: str):
    with pytest.raises(TypeError):
        admin.register_schema(42, ORDER)
    with pytest.raises(TypeError):
        admin.get_schema(subject, version=1.5)
    with pytest.raises(ValueError):
        admin.get_schema(subject, version=0)
    with pytest.raises(TypeError):
        admin.delete_schema(subject, permanent="yes")
    with pytest.raises(InvalidConfigError, match="transitive modes"):
        admin.register_schema(subject, ORDER, compatibility="BACKWARD_TRANSITIVE")
    with pytest.raises(InvalidConfigError, match="unknown compatibility"):
        admin.set_compatibility(subject, "SIDEWAYS")
    with pytest.raises(SchemaNotFoundError):
        admin.get_schema_by_id(2**70)


# ---- deleting -------------------------------------------------------------------------------------


def test_soft_delete_keeps_ids_resolvable_and_versions_unique(admin: Admin, subject: str):
    first = admin.register_schema(subject, ORDER)
    second = admin.register_schema(subject, ORDER_WITH_CURRENCY)
    assert admin.delete_schema(subject, version=2) == [2]
    assert admin.list_schema_versions(subject) == [1]
    assert admin.get_schema(subject).version == 1
    with pytest.raises(SchemaNotFoundError):
        admin.get_schema(subject, version=2)
    assert admin.get_schema_by_id(second.id).schema == ORDER_WITH_CURRENCY, "a soft-deleted id still resolves"
    again = admin.register_schema(subject, ORDER_WITH_CURRENCY)
    assert (again.version, again.id) == (3, second.id), "version numbers are not reused; the schema keeps its id"
    assert admin.delete_schema(subject) == [1, 3]
    assert subject not in admin.list_subjects()
    with pytest.raises(SchemaNotFoundError):
        admin.delete_schema(subject)
    assert admin.get_schema_by_id(first.id).schema == ORDER


def test_permanent_delete_forgets_the_schema_and_never_reuses_its_id(admin: Admin, subject: str):
    unique = {**ORDER, "title": f"only in {subject}"}
    registered = admin.register_schema(subject, unique)
    assert admin.delete_schema(subject, permanent=True) == [1]
    with pytest.raises(SchemaNotFoundError):
        admin.get_schema_by_id(registered.id)
    again = admin.register_schema(subject, unique)
    assert again.id > registered.id
    with pytest.raises(SchemaNotFoundError):
        admin.delete_schema(subject, version=7)


# ---- the serializer and the deserializer --------------------------------------------------------------


def test_serializer_validates_at_send_and_stamps_the_schema_id(admin: Admin, shared_broker, topic_name, subject):
    admin.create_topic(topic_name)
    version = admin.register_schema(subject, ORDER)
    serializer = JsonSchemaSerializer(shared_broker.bootstrap, subject)
    try:
        with Producer(shared_broker.bootstrap, value_serializer=serializer) as producer:
            producer.send(topic_name, {"order_id": 7, "amount_cents": 1250}, key=b"7").result(10)
            for bad in ({"order_id": 8}, {"order_id": "8", "amount_cents": 1}, {"order_id": 9, "amount_cents": -1}):
                with pytest.raises(SerializationError, match=f"does not match schema id {version.id}"):
                    producer.send(topic_name, bad, key=b"8")
            producer.flush(10)
    finally:
        serializer.close()
    records = read(shared_broker.bootstrap, topic_name, 1)
    assert [json.loads(record.value) for record in records] == [{"order_id": 7, "amount_cents": 1250}]
    assert records[0].headers["schema.id"] == str(version.id).encode()
    assert stored_count(shared_broker.bootstrap, topic_name) == 1, "nothing of the bad values reached the broker"


def test_serializer_picks_up_a_newer_version_when_a_value_fails(admin: Admin, subject: str):
    admin.register_schema(subject, {**ORDER, "additionalProperties": False})
    serializer = JsonSchemaSerializer(admin, subject, refresh_interval_ms=0)
    headers: dict[str, bytes] = {}
    with pytest.raises(SerializationError, match="does not match schema id"):
        serializer.serialize("t", {"order_id": 1, "amount_cents": 2, "currency": "EUR"}, headers)
    newer = admin.register_schema(subject, {**ORDER_WITH_CURRENCY, "additionalProperties": False})
    assert serializer.serialize("t", {"order_id": 1, "amount_cents": 2, "currency": "EUR"}, headers)
    assert headers["schema.id"] == str(newer.id).encode() and serializer.schema_id == newer.id


def test_serializer_for_a_subject_without_versions_fails_at_construction(admin: Admin, subject: str):
    with pytest.raises(SchemaNotFoundError):
        JsonSchemaSerializer(admin, subject)


def test_deserializer_round_trip(admin: Admin, shared_broker, topic_name, subject):
    admin.create_topic(topic_name)
    admin.register_schema(subject, ORDER)
    orders = [{"order_id": n, "amount_cents": 100 * n} for n in range(20)]
    with Producer(shared_broker.bootstrap, value_serializer=JsonSchemaSerializer(admin, subject)) as producer:
        for order in orders:
            producer.send(topic_name, order, key=b"%d" % order["order_id"])
    records = read(shared_broker.bootstrap, topic_name, len(orders), value_deserializer=JsonSchemaDeserializer(admin))
    assert [record.value for record in records] == orders


@pytest.mark.parametrize("headers, reason", [
    ({}, "no schema.id header"), ({"schema.id": b"999999999"}, "unknown schema id 999999999"),
    ({"schema.id": b"twelve"}, "is not a schema id"),
])
def test_deserializer_refuses_missing_and_unknown_ids(admin: Admin, shared_broker, topic_name, headers, reason):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap) as producer:
        producer.send(topic_name, b'{"order_id": 1}', headers=headers).result(10)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest",
                  value_deserializer=JsonSchemaDeserializer(admin)) as consumer:
        consumer.assign([TopicPartition(topic_name, 0)])
        with pytest.raises(DeserializationError, match=reason) as failed:
            for _ in range(100):
                consumer.poll(0.2)
    assert (failed.value.topic, failed.value.partition, failed.value.offset) == (topic_name, 0, 0)


def test_deserializer_validates_unless_told_not_to(admin: Admin, subject: str):
    version = admin.register_schema(subject, ORDER)
    headers = {"schema.id": str(version.id).encode()}
    strict, lenient = JsonSchemaDeserializer(admin), JsonSchemaDeserializer(admin, validate=False)
    with pytest.raises(DeserializationError, match="does not match schema id"):
        strict.deserialize("t", b'{"order_id": "x"}', headers)
    assert lenient.deserialize("t", b'{"order_id": "x"}', headers) == {"order_id": "x"}
    with pytest.raises(DeserializationError, match="not JSON"):
        strict.deserialize("t", b"{", headers)


# ---- any argument at all ----------------------------------------------------------------------------------

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**80), st.floats(),
    st.text(max_size=12), st.just("\ud800"), st.binary(max_size=8), st.sampled_from(["latest", "BACKWARD", "none"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.one_of(st.text(max_size=5), st.integers()),
                                                         st.one_of(st.text(max_size=3), st.integers(), st.none(),
                                                                   st.binary(max_size=3)), max_size=3),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(subject=st.one_of(st.just("fuzz-value"), anything), schema=st.one_of(st.just(ORDER), anything),
       version=anything, compatibility=anything, permanent=anything)
def test_any_arguments_give_a_typed_error_or_work(admin: Admin, subject, schema, version, compatibility, permanent):
    for call in (lambda: admin.register_schema(subject, schema, compatibility=compatibility),
                 lambda: admin.check_compatibility(subject, schema, compatibility=compatibility),
                 lambda: admin.get_schema(subject, version=version), lambda: admin.get_schema_by_id(version),
                 lambda: admin.list_schema_versions(subject), lambda: admin.get_compatibility(subject),
                 lambda: admin.set_compatibility(subject, compatibility),
                 lambda: admin.delete_schema(subject, version=version, permanent=permanent)):
        try:
            call()
        except (TypeError, ValueError, RillError) as error:
            assert not isinstance(error, (UnknownServerError, InvalidRequestError)), error
    assert isinstance(admin.list_subjects(), list)
