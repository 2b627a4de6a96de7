"""A record the consumer's deserializer fails on stops its partition there, as a corrupt batch does.

Against a real broker. A poison value (not JSON) sits among good ones, in
the same batch: ``poll`` returns every record before it, then raises
DeserializationError naming topic, partition and its offset, with the
deserializer's exception as ``__cause__``, on every poll until the
application seeks; no position and no commit passes it. Seeking one past it
reads on; seeking to it again retries it, for a deserializer that failed
for a passing reason.
"""

from __future__ import annotations

import json
import traceback

import msgspec
import pytest
from brokers import poll_until_error, wait_until
from rill.client import Consumer, JsonDeserializer, Producer, TopicPartition
from rill.client.errors import DeserializationError

GOOD_BEFORE = 20
POISON = GOOD_BEFORE  # the poison record's offset
GOOD_AFTER = 19
END = POISON + 1 + GOOD_AFTER


def good(number: int) -> bytes:
    return b'{"n":%d}' % number


def write_partition(bootstrap: str, topic: str, partition: int = 0, poison: bytes = b"not json") -> None:
    """GOOD_BEFORE good JSON values, the poison at POISON, GOOD_AFTER good ones, sent as one batch."""
    values = [good(n) for n in range(GOOD_BEFORE)] + [poison] + [good(n) for n in range(POISON + 1, END)]
    with Producer(bootstrap, linger_ms=100) as producer:
        futures = [producer.send(topic, value, partition=partition) for value in values]
        producer.flush()
    assert [future.result(10).offset for future in futures] == list(range(END))


def assert_stuck_at(consumer: Consumer, tp: TopicPartition, offset: int, polls: int = 5) -> None:
    """Every poll raises DeserializationError for ``offset`` (the same error, its traceback not growing);
    the position does not pass it."""
    tracebacks = []
    for _ in range(polls):
        with pytest.raises(DeserializationError) as raised:
            consumer.poll(0.1)
        error = raised.value
        assert (error.topic, error.partition, error.offset) == (tp.topic, tp.partition, offset)
        assert f"{tp.topic}-{tp.partition}" in str(error) and f"offset {offset}" in str(error)
        tracebacks.append(len(traceback.extract_tb(error.__traceback__)))
    assert len(set(tracebacks)) == 1, f"the traceback grows poll after poll: {tracebacks}"
    assert consumer.position(tp) <= offset


def read_rest(consumer: Consumer, expected: int) -> list:
    records: list = []
    for _ in range(300):
        records += consumer.poll(0.1)
        if len(records) >= expected:
            break
    return records


def test_a_poison_value_stops_the_partition_at_its_offset(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    write_partition(shared_broker.bootstrap, topic_name)
    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest", max_poll_records=7,
                  value_deserializer=JsonDeserializer()) as consumer:
        consumer.assign([tp])
        records, error = poll_until_error(consumer, DeserializationError)
        assert [record.offset for record in records] == list(range(GOOD_BEFORE))
        assert [record.value for record in records] == [{"n": n} for n in range(GOOD_BEFORE)]
        assert (error.topic, error.partition, error.offset) == (topic_name, 0, POISON)
        assert isinstance(error.__cause__, msgspec.DecodeError)
        assert "the value of the record at offset 20" in str(error) and "DecodeError" in str(error)
        assert_stuck_at(consumer, tp, POISON)
        assert consumer.position(tp) == POISON
        consumer.seek(tp, POISON + 1)  # past the poison record, in the same batch
        rest = read_rest(consumer, GOOD_AFTER)
        assert [record.offset for record in rest] == list(range(POISON + 1, END))
        assert [record.value for record in rest] == [{"n": n} for n in range(POISON + 1, END)]


def test_a_poison_key_names_the_key(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, linger_ms=50) as producer:
        for key in (b"1", b"2", b"three", b"4"):
            producer.send(topic_name, b"v", key=key, partition=0)
    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest", key_deserializer=int) as consumer:
        consumer.assign([tp])
        records, error = poll_until_error(consumer, DeserializationError)
        assert [record.key for record in records] == [1, 2]
        assert error.offset == 2 and "the key of the record at offset 2" in str(error)
        assert isinstance(error.__cause__, ValueError)
        assert_stuck_at(consumer, tp, 2)
        consumer.seek(tp, 3)
        assert [record.key for record in read_rest(consumer, 1)] == [4]


def test_in_a_group_no_commit_passes_the_poison_record(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    write_partition(shared_broker.bootstrap, topic_name)
    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, group_id=topic_name, topics=[topic_name], auto_offset_reset="earliest",
                  auto_commit_interval_ms=50, heartbeat_interval_ms=200,
                  value_deserializer=lambda data: json.loads(data)) as consumer:
        records, error = poll_until_error(consumer, DeserializationError)
        assert [record.value["n"] for record in records] == list(range(GOOD_BEFORE))
        assert (error.offset, type(error.__cause__)) == (POISON, json.JSONDecodeError)

        def auto_committed() -> bool:  # polls (which raise) run the auto-commit
            with pytest.raises(DeserializationError):
                consumer.poll(0.05)
            committed = consumer.committed([tp])[tp]
            assert committed is None or committed <= POISON, f"auto-commit passed the poison record: {committed}"
            return committed == POISON

        wait_until(auto_committed, 30, "the auto-commit of the position before the poison record")
        consumer.commit()
        assert consumer.committed([tp]) == {tp: POISON}, "a commit by hand does not pass it either"
        assert_stuck_at(consumer, tp, POISON)
        consumer.seek(tp, POISON + 1)
        rest = read_rest(consumer, GOOD_AFTER)
        assert [record.value["n"] for record in rest] == list(range(POISON + 1, END))
        consumer.commit()
        assert consumer.committed([tp]) == {tp: END}


def test_other_partitions_read_on_when_the_bad_one_is_paused(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    write_partition(shared_broker.bootstrap, topic_name, partition=0)
    with Producer(shared_broker.bootstrap) as producer:
        for number in range(15):
            producer.send(topic_name, good(number), partition=1)
    bad, other = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest", value_deserializer=JsonDeserializer()) as c:
        c.assign([bad, other])
        records, error = poll_until_error(c, DeserializationError)
        assert [r.offset for r in records if r.partition == 0] == list(range(GOOD_BEFORE))
        assert (error.partition, error.offset) == (0, POISON)
        c.pause([bad])
        records += read_rest(c, 15 - sum(1 for r in records if r.partition == 1))
        assert [r.value for r in records if r.partition == 1] == [{"n": n} for n in range(15)]
        c.resume([bad])
        assert_stuck_at(c, bad, POISON)


def test_seeking_to_the_record_again_retries_it(admin, shared_broker, topic_name):
    """A deserializer that fails for a passing reason (a schema registry out of reach, say): a seek to the
    record's own offset drops what was fetched and decodes it again."""
    admin.create_topic(topic_name, partitions=1)
    write_partition(shared_broker.bootstrap, topic_name, poison=b'{"n":"flaky"}')
    failures = []

    def flaky(data: bytes) -> dict:
        value = json.loads(data)
        if value["n"] == "flaky" and not failures:
            failures.append(value)
            raise ConnectionError("registry out of reach")
        return value

    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest", value_deserializer=flaky) as consumer:
        consumer.assign([tp])
        records, error = poll_until_error(consumer, DeserializationError)
        assert (len(records), error.offset, type(error.__cause__)) == (GOOD_BEFORE, POISON, ConnectionError)
        assert_stuck_at(consumer, tp, POISON, polls=2)
        consumer.seek(tp, POISON)
        rest = read_rest(consumer, GOOD_AFTER + 1)
        assert [record.value["n"] for record in rest] == ["flaky", *range(POISON + 1, END)]
