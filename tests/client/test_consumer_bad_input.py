"""Bad input to the Consumer fails at the call with a typed error, and leaves the consumer working.

Against a real broker. Constructor settings raise InvalidConfigError; call
arguments raise TypeError (wrong type) or ValueError (bad value), besides
the documented InvalidConfigError (a partition not assigned) and
OffsetOutOfRangeError (a seek or commit below 0 or past the log end).
Property tests throw random wrong-typed values at every argument of every
public method; their example count comes from tests/hypothesis_profiles.py
(HYPOTHESIS_PROFILE=fuzz for many).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import hypothesis_profiles  # noqa: F401 - registers and loads the hypothesis profiles
import pytest
from brokers import BrokerProcess, wait_until
from hypothesis import given
from hypothesis import strategies as st
from rill.client import Admin, Consumer, Producer, TopicPartition
from rill.client.errors import ConsumerClosedError, InvalidConfigError, OffsetOutOfRangeError, UnknownTopicError

RECORDS = 10
ARGUMENT_ERRORS = (TypeError, ValueError, InvalidConfigError)

BAD_TOPIC_PARTITIONS = st.one_of(
    st.builds(TopicPartition, st.one_of(st.none(), st.integers(), st.binary(max_size=4), st.just(""),
                                         st.just("no spaces allowed")), st.integers(0, 3)),
    st.builds(TopicPartition, st.just("t"), st.one_of(st.none(), st.booleans(), st.integers(max_value=-1),
                                                      st.text(max_size=3), st.floats())),
)
WRONG = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.binary(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.tuples(st.integers(), st.text(max_size=3)), st.sets(st.integers(), max_size=2), st.builds(object),
    st.just(print), st.just(float("nan")), st.just(float("inf")), BAD_TOPIC_PARTITIONS,
    st.lists(BAD_TOPIC_PARTITIONS, min_size=1, max_size=2),
    st.dictionaries(BAD_TOPIC_PARTITIONS, st.integers(), min_size=1, max_size=2),
)


def not_a_wait(value: object) -> bool:
    """Leave out valid poll timeouts: a valid long one would only make the test wait."""
    return not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0)


@pytest.fixture(scope="module")
def topic(shared_broker: BrokerProcess) -> str:
    name = "consumer-bad-input"
    with Admin(shared_broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(name, partitions=1)
    with Producer(shared_broker.bootstrap) as producer:
        for number in range(RECORDS):
            producer.send(name, b"%d" % number)
    return name


@pytest.fixture(scope="module")
def consumer(shared_broker: BrokerProcess, topic: str) -> Iterator[Consumer]:
    """A consumer with a group (so commits work) reading the topic's one partition, assigned by hand."""
    with Consumer(shared_broker.bootstrap, group_id="consumer-bad-input", enable_auto_commit=False,
                  auto_offset_reset="earliest", request_timeout_ms=5_000) as client:
        client.assign([TopicPartition(topic, 0)])
        wait_until(lambda: client.committed([TopicPartition(topic, 0)]) is not None, 60, "the group coordinator")
        yield client


def still_reads_everything(consumer: Consumer, topic: str) -> None:
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.resume([tp])
    consumer.seek_to_beginning()
    records: list = []
    for _ in range(100):
        records += consumer.poll(0.1)
        if len(records) >= RECORDS:
            break
    assert [record.value for record in records] == [b"%d" % n for n in range(RECORDS)]


# ---- every public method, random wrong-typed values ------------------------------------------

METHOD_CALLS: dict[str, Callable[[Consumer, TopicPartition, object], object]] = {
    "poll(timeout)": lambda c, tp, v: c.poll(v),
    "subscribe(topics)": lambda c, tp, v: c.subscribe(v),
    "subscribe(pattern)": lambda c, tp, v: c.subscribe(pattern=v),
    "assign(partitions)": lambda c, tp, v: c.assign(v),
    "seek(partition)": lambda c, tp, v: c.seek(v, 0),
    "seek(offset)": lambda c, tp, v: c.seek(tp, v),
    "seek_to_beginning(partitions)": lambda c, tp, v: c.seek_to_beginning(v),
    "seek_to_end(partitions)": lambda c, tp, v: c.seek_to_end(v),
    "position(partition)": lambda c, tp, v: c.position(v),
    "offsets_for_times(timestamps)": lambda c, tp, v: c.offsets_for_times(v),
    "end_offsets(partitions)": lambda c, tp, v: c.end_offsets(v),
    "beginning_offsets(partitions)": lambda c, tp, v: c.beginning_offsets(v),
    "pause(partitions)": lambda c, tp, v: c.pause(v),
    "resume(partitions)": lambda c, tp, v: c.resume(v),
    "commit(offsets)": lambda c, tp, v: c.commit(v),
    "commit(asynchronous)": lambda c, tp, v: c.commit(None, v),
    "committed(partitions)": lambda c, tp, v: c.committed(v),
}
OUT_OF_RANGE_ALLOWED = ("seek(offset)", "commit(offsets)")


@pytest.mark.parametrize("call", sorted(METHOD_CALLS))
def test_wrong_typed_arguments_raise_typed_errors_at_the_call(consumer, topic, call):
    tp = TopicPartition(topic, 0)
    allowed = ARGUMENT_ERRORS + ((OffsetOutOfRangeError,) if call in OUT_OF_RANGE_ALLOWED else ())
    values = WRONG.filter(not_a_wait) if call == "poll(timeout)" else WRONG

    @given(value=values)
    def check(value: object) -> None:
        consumer.assign([tp])
        try:
            METHOD_CALLS[call](consumer, tp, value)
        except allowed:
            pass  # anything else fails the test, naming the value

    check()
    still_reads_everything(consumer, topic)


SETTINGS = ("group_id", "topics", "pattern", "enable_auto_commit", "auto_commit_interval_ms", "auto_offset_reset",
            "max_poll_records", "session_timeout_ms", "heartbeat_interval_ms", "assignor", "on_assign", "on_revoke",
            "fetch_min_bytes", "fetch_max_wait_ms", "fetch_max_bytes", "max_partition_fetch_bytes",
            "request_timeout_ms", "check_crcs", "client_id")


@pytest.mark.parametrize("setting", ("bootstrap",) + SETTINGS)
def test_wrong_typed_settings_raise_invalid_config_error(shared_broker, setting):
    # A collection of valid topic names that do not exist (say the dict {"0": 0}) is no wrong type:
    # without a group_id it fails as documented, with UnknownTopicError.
    allowed = (InvalidConfigError, UnknownTopicError) if setting == "topics" else InvalidConfigError

    @given(value=WRONG)
    def check(value: object) -> None:
        arguments = {"bootstrap": shared_broker.bootstrap, setting: value}
        try:
            consumer = Consumer(**arguments)
        except allowed:
            return
        consumer.close()  # a value that happened to be valid

    check()


# ---- wrong values, one by one ------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    {"auto_offset_reset": "sometimes"}, {"auto_offset_reset": None}, {"assignor": "fair"},
    {"max_poll_records": 0}, {"max_poll_records": -5}, {"max_poll_records": 2**31}, {"max_poll_records": True},
    {"max_poll_records": "500"}, {"max_poll_records": 500.0}, {"fetch_max_wait_ms": -1},
    {"session_timeout_ms": 1000, "heartbeat_interval_ms": 1000}, {"request_timeout_ms": 0},
    {"on_assign": "print"}, {"on_revoke": 42}, {"enable_auto_commit": 1}, {"check_crcs": "yes"},
    {"client_id": 5}, {"group_id": ""}, {"group_id": 7}, {"topics": "orders"}, {"topics": [""]},
    {"topics": ["no spaces"]}, {"topics": [b"orders"]}, {"topics": 5}, {"pattern": "orders-("}, {"pattern": 5},
    {"bootstrap": None}, {"bootstrap": "no-port"}, {"bootstrap": ""}, {"bootstrap": ["127.0.0.1:9092"]},
], ids=repr)
def test_bad_settings(shared_broker, settings):
    with pytest.raises(InvalidConfigError):
        Consumer(**{"bootstrap": shared_broker.bootstrap, **settings})


def test_bad_call_values(consumer, topic):
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    other = TopicPartition(topic, 7)
    cases: list[tuple[type[Exception], Callable[[], object]]] = [
        (ValueError, lambda: consumer.poll(-1)),
        (ValueError, lambda: consumer.poll(-0.5)),
        (ValueError, lambda: consumer.poll(math.nan)),
        (TypeError, lambda: consumer.poll("1")),
        (TypeError, lambda: consumer.poll(None)),
        (TypeError, lambda: consumer.subscribe(topic)),
        (ValueError, lambda: consumer.subscribe(["bad name"])),
        (ValueError, lambda: consumer.subscribe(pattern="orders-(")),
        (TypeError, lambda: consumer.assign(tp)),
        (TypeError, lambda: consumer.assign([(topic, 0)])),
        (ValueError, lambda: consumer.assign([TopicPartition(topic, -1)])),
        (TypeError, lambda: consumer.seek(f"{topic}-0", 1)),
        (TypeError, lambda: consumer.seek(tp, "1")),
        (TypeError, lambda: consumer.seek(tp, 1.0)),
        (OffsetOutOfRangeError, lambda: consumer.seek(tp, -1)),
        (OffsetOutOfRangeError, lambda: consumer.seek(tp, RECORDS + 1)),
        (InvalidConfigError, lambda: consumer.seek(other, 0)),
        (InvalidConfigError, lambda: consumer.seek_to_end([other])),
        (InvalidConfigError, lambda: consumer.position(other)),
        (TypeError, lambda: consumer.end_offsets(tp)),
        (TypeError, lambda: consumer.offsets_for_times([tp])),
        (TypeError, lambda: consumer.offsets_for_times({tp: "now"})),
        (ValueError, lambda: consumer.offsets_for_times({tp: -5})),
        (TypeError, lambda: consumer.commit({tp: "5"})),
        (TypeError, lambda: consumer.commit([tp])),
        (OffsetOutOfRangeError, lambda: consumer.commit({tp: -1})),
        (TypeError, lambda: consumer.commit(asynchronous="yes")),
        (TypeError, lambda: consumer.committed(tp)),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    with pytest.raises(InvalidConfigError):
        consumer.pause([tp, other])
    consumer.seek_to_beginning()
    assert consumer.poll(5.0), "a refused pause([assigned, unassigned]) paused nothing"
    still_reads_everything(consumer, topic)


def test_a_consumer_that_assigned_partitions_cannot_also_subscribe_to_its_group(consumer, topic):
    consumer.assign([TopicPartition(topic, 0)])
    with pytest.raises(InvalidConfigError, match="assign"):
        consumer.subscribe([topic])
    assert consumer.assignment() == {TopicPartition(topic, 0)}


def test_every_method_of_a_closed_consumer_raises(shared_broker, topic):
    tp = TopicPartition(topic, 0)
    consumer = Consumer(shared_broker.bootstrap, group_id="closed-consumer")
    consumer.assign([tp])
    consumer.close()
    calls = [lambda: consumer.poll(0), lambda: consumer.subscribe([topic]), lambda: consumer.assign([tp]),
             lambda: consumer.seek(tp, 0), lambda: consumer.seek_to_beginning(), lambda: consumer.seek_to_end(),
             lambda: consumer.position(tp), lambda: consumer.offsets_for_times({tp: 0}),
             lambda: consumer.end_offsets([tp]), lambda: consumer.beginning_offsets([tp]),
             lambda: consumer.pause([tp]), lambda: consumer.resume([tp]), lambda: consumer.commit(),
             lambda: consumer.committed([tp])]
    for call in calls:
        with pytest.raises(ConsumerClosedError):
            call()
    consumer.close()  # closing twice is fine
