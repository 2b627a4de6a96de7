"""A wrong call fails at the call, and nothing else: the shared producer and its sender thread go on.

Against a real broker: bad ``send`` arguments raise TypeError/ValueError before anything is queued;
bad settings raise InvalidConfigError when the Producer is built; a raising done callback and an
unexpected error inside the sender thread are contained (the batches involved fail with
ClientInternalError, later records are acknowledged); only errors that repeat round after round stop
the sender for good, and then every later call fails at once.
"""

from __future__ import annotations

import threading

import pytest
from brokers import wait_until
from rill.client import Consumer, Producer
from rill.client.errors import (
    ClientInternalError,
    InvalidConfigError,
    ProducerClosedError,
    RecordTooLargeError,
    UnknownTopicError,
)
from rill.client.sender import MAX_FAILURES_IN_A_ROW, Sender

ACK_TIMEOUT_S = 30.0


@pytest.fixture
def topic(admin, topic_name: str) -> str:
    admin.create_topic(topic_name, partitions=2)
    return topic_name


@pytest.fixture
def producer(shared_broker):
    with Producer(shared_broker.bootstrap, linger_ms=2) as client:
        yield client


def consume_all(bootstrap: str, topic: str, expected: int) -> list:
    records: list = []
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest") as consumer:
        for _ in range(300):
            records += consumer.poll(timeout=0.2)
            if len(records) >= expected:
                break
    return records


def send_from_threads(producer: Producer, topic: str, threads: int, per_thread: int) -> list:
    futures: list = []
    lock = threading.Lock()

    def work(thread: int) -> None:
        mine = [producer.send(topic, b"%d-%d" % (thread, i)) for i in range(per_thread)]
        with lock:
            futures.extend(mine)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return futures


def test_a_str_value_fails_at_the_call_and_the_shared_producer_goes_on(shared_broker, producer, topic):
    with pytest.raises(TypeError, match="value must be bytes"):
        producer.send(topic, "a str, not bytes")
    futures = send_from_threads(producer, topic, threads=2, per_thread=500)
    producer.flush(timeout=ACK_TIMEOUT_S)
    offsets = {(f.result(0).partition, f.result(0).offset) for f in futures}
    assert len(offsets) == 1_000
    assert len(consume_all(shared_broker.bootstrap, topic, 1_000)) == 1_000


@pytest.mark.parametrize("arguments, error", [
    ({"value": "text"}, TypeError),
    ({"value": 5}, TypeError),
    ({"value": [b"x"]}, TypeError),
    ({"key": "text"}, TypeError),
    ({"key": 1.5}, TypeError),
    ({"headers": {"h": "text"}}, TypeError),
    ({"headers": {"h": None}}, TypeError),
    ({"headers": {1: b"v"}}, TypeError),
    ({"headers": "h=v"}, TypeError),
    ({"headers": 0}, TypeError),
    ({"headers": [("h",)]}, TypeError),
    ({"headers": [("h", b"1"), ("h", b"2")]}, ValueError),
    ({"headers": {"\ud800": b"v"}}, ValueError),
    ({"topic": b"topic"}, TypeError),
    ({"topic": None}, TypeError),
    ({"topic": ["topic"]}, TypeError),
    ({"topic": ""}, ValueError),
    ({"topic": "has space"}, ValueError),
    ({"topic": ".."}, ValueError),
    ({"topic": "x" * 250}, ValueError),
    ({"partition": -1}, ValueError),
    ({"partition": "0"}, TypeError),
    ({"partition": True}, TypeError),
    ({"partition": 1.0}, TypeError),
    ({"partition": 2}, UnknownTopicError),
    ({"timestamp_ms": -1}, ValueError),
    ({"timestamp_ms": 2**63}, ValueError),
    ({"timestamp_ms": 1.5}, TypeError),
    ({"timestamp_ms": "1"}, TypeError),
    ({"value": b"x" * 2_000_000}, RecordTooLargeError),
])
def test_bad_send_arguments_fail_at_the_call(producer, topic, arguments, error):
    call = {"topic": topic, "value": b"v", **arguments}
    with pytest.raises(error):
        producer.send(call.pop("topic"), **call)
    assert producer.send(topic, b"good").result(ACK_TIMEOUT_S).offset >= 0


def test_bytes_like_values_and_header_pairs_are_copied_at_the_call(shared_broker, producer, topic):
    value = bytearray(b"before")
    key = memoryview(b"key-bytes")
    headers = [("kind", bytearray(b"order")), ("source", memoryview(b"shop"))]
    future = producer.send(topic, value, key=key, headers=headers)
    value[:] = b"AFTER!"  # a change after send must not reach the record
    headers[0][1][:] = b"xxxxx"
    future.result(ACK_TIMEOUT_S)
    [record] = consume_all(shared_broker.bootstrap, topic, 1)
    assert (record.value, record.key) == (b"before", b"key-bytes")
    assert dict(record.headers) == {"kind": b"order", "source": b"shop"}


def test_a_raising_callback_is_contained(producer, topic):
    calls: list = []

    def boom(future) -> None:
        calls.append("boom")
        raise RuntimeError("a user callback fails")

    futures = [producer.send(topic, b"%d" % i) for i in range(50)]
    for future in futures:
        future.add_done_callback(boom)
        future.add_done_callback(lambda f: calls.append("next"))  # runs although the one before raised
    producer.flush(timeout=ACK_TIMEOUT_S)
    assert all(f.exception(0) is None for f in futures)
    assert calls.count("boom") == calls.count("next") == 50
    futures[0].add_done_callback(boom)  # done already: runs at once, contained here too
    assert calls.count("boom") == 51
    with pytest.raises(TypeError, match="callable"):
        futures[0].add_done_callback("not a function")
    later = send_from_threads(producer, topic, threads=2, per_thread=100)
    producer.flush(timeout=ACK_TIMEOUT_S)
    assert all(f.exception(0) is None for f in later)


def test_flush_or_close_from_a_callback_fails_instead_of_hanging_the_sender(producer, topic):
    errors: list = []

    def call_back_into_the_producer(future) -> None:
        for call in (producer.flush, producer.close):
            try:
                call()
            except RuntimeError as error:
                errors.append(str(error))

    producer.send(topic, b"v").add_done_callback(call_back_into_the_producer)
    producer.flush(timeout=ACK_TIMEOUT_S)
    assert len(errors) == 2 and all("sender thread" in error for error in errors)
    assert producer.send(topic, b"later").result(ACK_TIMEOUT_S).offset >= 0


@pytest.mark.parametrize("method", ["_send_waiting", "_on_response"])
def test_an_unexpected_error_in_the_sender_fails_only_the_batches_involved(monkeypatch, producer, topic, method):
    """Before sending (batches waiting) and while handling a response (batches in flight, whose request
    the network client has forgotten): either way those batches fail at once, and the sender goes on."""
    original = getattr(Sender, method)
    injected = threading.Event()

    def fail_once(self, *args):
        if not injected.is_set() and (method != "_send_waiting" or self._waiting):
            injected.set()
            raise RuntimeError("injected failure")
        return original(self, *args)

    monkeypatch.setattr(Sender, method, fail_once)
    involved = producer.send(topic, b"involved")
    assert isinstance(involved.exception(ACK_TIMEOUT_S), ClientInternalError)
    assert injected.is_set()
    futures = send_from_threads(producer, topic, threads=2, per_thread=200)
    producer.flush(timeout=ACK_TIMEOUT_S)
    assert all(f.exception(0) is None for f in futures)


def test_errors_in_every_round_stop_the_sender_and_later_calls_fail_at_once(monkeypatch, producer, topic):
    producer.send(topic, b"warm-up").result(ACK_TIMEOUT_S)  # metadata known: later sends do not wait for it
    rounds: list = []

    def always_fail(self, *args):
        rounds.append(1)
        raise RuntimeError("a persistent bug")

    monkeypatch.setattr(Sender, "_round", always_fail)
    producer._wake()
    pending = producer.send(topic, b"queued while the sender fails")
    assert isinstance(pending.exception(ACK_TIMEOUT_S), ProducerClosedError)
    wait_until(lambda: not producer._sender.is_alive(), ACK_TIMEOUT_S, "the sender thread to stop")
    assert len(rounds) == MAX_FAILURES_IN_A_ROW
    with pytest.raises(ProducerClosedError, match=f"failed {MAX_FAILURES_IN_A_ROW} times in a row"):
        producer.send(topic, b"late")
    with pytest.raises(ProducerClosedError, match=f"failed {MAX_FAILURES_IN_A_ROW} times in a row"):
        producer.flush(timeout=ACK_TIMEOUT_S)
    producer.close()


@pytest.mark.parametrize("settings", [
    {"bootstrap": None}, {"bootstrap": 9092}, {"bootstrap": "host:\u00b2"},
    {"acks": 2}, {"acks": "most"}, {"acks": True}, {"acks": 1.0}, {"acks": [1]}, {"acks": None},
    {"compression": "zstd"}, {"compression": None}, {"compression": ["lz4"]},
    {"linger_ms": -1}, {"linger_ms": 1.5}, {"linger_ms": "5"}, {"linger_ms": True},
    {"batch_size": 0}, {"batch_size": 2**31},
    {"max_request_size": 10}, {"buffer_memory": 0}, {"max_block_ms": -1},
    {"request_timeout_ms": 0}, {"request_timeout_ms": None},
    {"delivery_timeout_ms": 1_000},  # below linger_ms + request_timeout_ms
    {"retry_backoff_ms": -1}, {"max_in_flight_requests_per_connection": 0},
    {"client_id": 5}, {"client_id": None},
])
def test_bad_settings_fail_at_construction(shared_broker, settings):
    arguments = {"bootstrap": shared_broker.bootstrap, **settings}
    with pytest.raises(InvalidConfigError):
        Producer(arguments.pop("bootstrap"), **arguments)


@pytest.mark.parametrize("call", [
    lambda p: p.flush(timeout="1"), lambda p: p.flush(timeout=-1), lambda p: p.flush(timeout=float("nan")),
    lambda p: p.flush(timeout=1e300), lambda p: p.close(timeout=[]),
])
def test_bad_timeouts_fail_at_the_call(producer, topic, call):
    with pytest.raises((TypeError, ValueError)):
        call(producer)
    future = producer.send(topic, b"good")
    with pytest.raises((TypeError, ValueError)):
        future.result(timeout="soon")
    assert future.result(ACK_TIMEOUT_S).offset >= 0
