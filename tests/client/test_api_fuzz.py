"""Random arguments, mostly of wrong types, at every public Producer and Admin call (hypothesis).

The property: a call either works or raises at the call TypeError, ValueError or a typed RillError
the API documents, never another exception (AttributeError, OverflowError, ...) and never an error
that means the client sent something malformed (InvalidRequestError, CorruptRecordError,
UnknownServerError) or broke itself (ClientInternalError, ProducerClosedError). Afterwards the shared
Producer still gets a good record acknowledged and the Admin still answers.

Examples per test come from tests/hypothesis_profiles.py: few by default, many with
``HYPOTHESIS_PROFILE=fuzz``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import hypothesis_profiles  # noqa: F401  (registers the profiles and loads the chosen one)
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rill.client import Admin, Producer
from rill.client.errors import (
    BrokerNotAvailableError,
    ClientInternalError,
    CorruptRecordError,
    InvalidRequestError,
    ProducerClosedError,
    RillError,
    UnknownServerError,
)
from rill.client.topic_names import topic_name_problem

TOPIC = "api-fuzz"
GROUP = "api-fuzz-group"
ACK_TIMEOUT_S = 30.0
MALFORMED = (UnknownServerError, InvalidRequestError, CorruptRecordError, ClientInternalError, ProducerClosedError,
             BrokerNotAvailableError)

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(),
    st.text(max_size=12), st.just("\ud800"), st.binary(max_size=12), st.builds(bytearray, st.binary(max_size=8)),
    st.builds(memoryview, st.binary(max_size=8)),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.binary(max_size=3)), max_size=3),
    st.tuples(st.text(max_size=3), st.binary(max_size=3)),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), st.one_of(st.binary(max_size=3), st.integers(),
                                                                             st.none()), max_size=3),
    st.sampled_from([object(), int, len, Ellipsis, NotImplemented, frozenset({1})]),
)
not_a_topic = st.one_of(anything.filter(lambda v: not (isinstance(v, str) and topic_name_problem(v) is None)),
                        st.just("api-fuzz-no-such-topic"))
valid_bytes = st.one_of(st.none(), st.binary(max_size=16))
header_pairs = st.lists(st.tuples(st.one_of(st.text(max_size=4), anything), st.one_of(st.binary(max_size=4), anything)),
                        max_size=3)


def outcome(call: Callable[[], Any]) -> Any:
    """What the call returns, or the allowed exception it raised; anything else fails the test."""
    try:
        return call()
    except MALFORMED:
        raise
    except (TypeError, ValueError, RillError) as error:
        return error


@pytest.fixture(scope="module")
def fuzz_admin(shared_broker) -> Iterator[Admin]:
    with Admin(shared_broker.bootstrap, request_timeout_ms=5_000) as admin:
        if TOPIC not in admin.list_topics():
            admin.create_topic(TOPIC, partitions=2)
        yield admin


@pytest.fixture(scope="module")
def producer(shared_broker, fuzz_admin) -> Iterator[Producer]:
    with Producer(shared_broker.bootstrap, linger_ms=1, max_block_ms=2_000, request_timeout_ms=5_000,
                  delivery_timeout_ms=30_000) as client:
        yield client


def assert_producer_works(producer: Producer) -> None:
    assert producer.send(TOPIC, b"still works").result(ACK_TIMEOUT_S).offset >= 0


@given(topic=st.one_of(st.just(TOPIC), not_a_topic), value=st.one_of(valid_bytes, anything),
       key=st.one_of(valid_bytes, anything), headers=st.one_of(st.none(), header_pairs, anything),
       partition=st.one_of(st.none(), st.integers(-2, 3), anything),
       timestamp_ms=st.one_of(st.none(), st.integers(), anything))
def test_send(producer, topic, value, key, headers, partition, timestamp_ms):
    result = outcome(lambda: producer.send(topic, value, key=key, headers=headers, partition=partition,
                                           timestamp_ms=timestamp_ms))
    if not isinstance(result, Exception):
        assert result.result(ACK_TIMEOUT_S).offset >= 0  # accepted at the call: then it must be stored
    assert_producer_works(producer)


@given(timeout=anything, callback=st.one_of(anything, st.just(lambda future: 1 / 0)))
def test_future_and_flush(producer, timeout, callback):
    future = producer.send(TOPIC, b"v")
    outcome(lambda: future.result(timeout))
    outcome(lambda: future.exception(timeout))
    outcome(lambda: future.add_done_callback(callback))
    outcome(lambda: producer.flush(timeout))
    assert future.result(ACK_TIMEOUT_S).offset >= 0
    assert_producer_works(producer)


PRODUCER_SETTINGS = ["bootstrap", "acks", "linger_ms", "batch_size", "compression", "max_request_size",
                     "buffer_memory", "max_block_ms", "delivery_timeout_ms", "request_timeout_ms", "retry_backoff_ms",
                     "max_in_flight_requests_per_connection", "client_id"]


@given(name=st.sampled_from(PRODUCER_SETTINGS), value=anything)
def test_producer_settings(shared_broker, producer, name, value):
    settings = {"bootstrap": shared_broker.bootstrap, name: value}
    built = outcome(lambda: Producer(settings.pop("bootstrap"), **settings))
    if isinstance(built, Producer):
        built.close(timeout=0)
    assert_producer_works(producer)


@given(name=st.sampled_from(["bootstrap", "request_timeout_ms", "client_id"]), value=anything)
def test_admin_settings(shared_broker, fuzz_admin, name, value):
    settings = {"bootstrap": shared_broker.bootstrap, name: value}
    built = outcome(lambda: Admin(settings.pop("bootstrap"), **settings))
    if isinstance(built, Admin):
        built.close()
    assert TOPIC in fuzz_admin.list_topics()


hashable = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
                     st.just("\ud800"), st.binary(max_size=4), st.tuples(st.integers()))
config_maps = st.dictionaries(st.one_of(st.sampled_from(["retention.ms", "cleanup.policy", "segment.bytes"]), hashable),
                              anything, max_size=2)


@given(name=st.one_of(st.just(TOPIC), not_a_topic), partitions=st.one_of(st.integers(-1, 3), anything),
       replication_factor=st.one_of(st.integers(-1, 2), anything), config=st.one_of(st.none(), config_maps, anything))
def test_admin_topics(fuzz_admin, name, partitions, replication_factor, config):
    outcome(lambda: fuzz_admin.create_topic(name, partitions, replication_factor, config))
    outcome(lambda: fuzz_admin.describe_topic(name))
    if name != TOPIC:
        outcome(lambda: fuzz_admin.delete_topic(name))
    assert len(fuzz_admin.describe_topic(TOPIC).partitions) == 2


@given(group=st.one_of(st.just(GROUP), anything), topic=st.one_of(st.just(TOPIC), not_a_topic),
       to_earliest=st.one_of(st.booleans(), anything), to_latest=st.one_of(st.booleans(), anything),
       to_offset=st.one_of(st.none(), st.integers(), anything), to_datetime=st.one_of(st.none(), st.datetimes(), anything),
       partitions=st.one_of(st.none(), st.lists(st.integers(-1, 3), max_size=3), anything))
def test_admin_groups(fuzz_admin, group, topic, to_earliest, to_latest, to_offset, to_datetime, partitions):
    outcome(lambda: fuzz_admin.reset_offsets(group, topic, to_earliest=to_earliest, to_latest=to_latest,
                                             to_offset=to_offset, to_datetime=to_datetime, partitions=partitions))
    outcome(lambda: fuzz_admin.describe_group(group))
    outcome(lambda: fuzz_admin.delete_group(group))
    assert TOPIC in fuzz_admin.list_topics()
