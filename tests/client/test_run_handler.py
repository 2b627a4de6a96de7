"""run_handler against the shared broker: handling, retries, dead letters, key order, commits, stops, bad input.

Orders of events are asserted (which record the handler saw when), never
durations. Each test has its own topic and group.
"""

from __future__ import annotations

import threading
import time

import pytest
import rill.client.handler as handler_module
from brokers import poll_until_assigned, read_partition, wait_until
from rill.client import Admin, Consumer, HandlerStats, JsonDeserializer, Producer, Retry, run_handler
from rill.client.dead_letter import DeadLetterWriter
from rill.client.errors import InvalidConfigError, InvalidTopicError
from rill.client.types import TopicPartition


class Flaky(Exception):
    """A failure a retry may cure."""


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], partition: int = 0,
            headers: dict[str, bytes] | None = None) -> None:
    with Producer(bootstrap) as producer:
        for key, value in records:
            producer.send(topic, value, key=key, partition=partition, headers=headers)
        producer.flush()


def member(bootstrap: str, topic: str, group: str, **settings) -> Consumer:
    return Consumer(bootstrap, group_id=group, topics=[topic], enable_auto_commit=False,
                    auto_offset_reset="earliest", heartbeat_interval_ms=100, **settings)


def committed(admin: Admin, group: str, topic: str) -> dict[int, int | None]:
    return {lag.partition: lag.committed_offset for lag in admin.describe_group(group).partitions
            if lag.topic == topic}


@pytest.fixture
def topic(admin: Admin, topic_name: str) -> str:
    admin.create_topic(topic_name, partitions=1)
    return topic_name


def test_every_record_handled_and_committed(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap) as producer:
        for index in range(20):
            producer.send(topic_name, b"%d" % index, key=b"k%d" % (index % 5), partition=index % 2)
    seen: list[bytes] = []
    with member(shared_broker.bootstrap, topic_name, "ok") as consumer:
        stats = run_handler(consumer, lambda record: seen.append(record.value), retry=Retry(attempts=3, backoff_ms=100),
                            dead_letter_topic=None, max_records=20, timeout=None)
        assert stats == HandlerStats(handled=20, retried=0, dead_lettered=0)
        assert sorted(seen) == sorted(b"%d" % index for index in range(20))
        assert committed(admin, "ok", topic_name) == {0: 10, 1: 10}
    assert topic_name + ".dlq" not in admin.list_topics(), "no failure, no dead-letter topic"


def test_transient_failure_is_retried_then_handled(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(b"a", b"0"), (b"b", b"flaky"), (b"c", b"2")])
    failures = {"left": 2}
    calls: list[bytes] = []

    def handle(record) -> None:
        calls.append(record.value)
        if record.value == b"flaky" and failures["left"]:
            failures["left"] -= 1
            raise Flaky("try again")

    with member(shared_broker.bootstrap, topic, "transient") as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=3, backoff_ms=20), max_records=3)
    assert stats == HandlerStats(handled=3, retried=2, dead_lettered=0)
    assert calls.count(b"flaky") == 3
    assert committed(admin, "transient", topic) == {0: 3}


def test_poison_record_is_dead_lettered_once_and_its_key_waits_but_others_go_on(admin, shared_broker, topic):
    records = [(b"a", b"0"), (b"b", b"1"), (b"a", b"poison"), (b"b", b"3"), (None, b"4"), (b"a", b"5"),
               (b"c", b"6")]
    produce(shared_broker.bootstrap, topic, records, headers={"trace": b"t-1"})
    calls: list[bytes] = []

    def handle(record) -> None:
        calls.append(record.value)
        if record.value == b"poison":
            raise RuntimeError("cannot charge order 2")

    before_ms = int(time.time() * 1000)
    with member(shared_broker.bootstrap, topic, "poison") as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=3, backoff_ms=50), max_records=len(records))
    assert stats == HandlerStats(handled=6, retried=2, dead_lettered=1)
    first_try = calls.index(b"poison")
    assert calls[:first_try] == [b"0", b"1"]
    assert calls[first_try + 1:first_try + 4] == [b"3", b"4", b"6"], "other keys went on while it waited"
    assert calls[first_try + 4:] == [b"poison", b"poison", b"5"], "the key's next record came after it"
    assert committed(admin, "poison", topic) == {0: len(records)}

    assert len(admin.describe_topic(topic + ".dlq").partitions) == 1, "created like its source"
    [copy] = read_partition(shared_broker.bootstrap, topic + ".dlq")
    assert (copy.key, copy.value) == (b"a", b"poison")
    headers = dict(copy.headers)
    assert headers.pop("trace") == b"t-1", "the original headers are kept"
    assert headers.pop("dlq.time").isdigit() and int(copy.headers["dlq.time"]) >= before_ms
    assert headers == {"dlq.topic": topic.encode(), "dlq.partition": b"0", "dlq.offset": b"2",
                       "dlq.error.type": b"RuntimeError", "dlq.error": b"cannot charge order 2",
                       "dlq.attempts": b"3", "dlq.offset.max": b"2", "dlq.group": b"poison"}


def test_error_outside_retry_on_is_dead_lettered_without_retries(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(b"a", b"0"), (b"a", b"1")])
    calls: list[bytes] = []

    def handle(record) -> None:
        calls.append(record.value)
        if record.value == b"0":
            raise KeyError("a bug: no retry helps")

    with member(shared_broker.bootstrap, topic, "not-retried") as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=5, backoff_ms=10, retry_on=Flaky), max_records=2)
    assert stats == HandlerStats(handled=1, retried=0, dead_lettered=1)
    assert calls == [b"0", b"1"]
    [copy] = read_partition(shared_broker.bootstrap, topic + ".dlq")
    assert copy.headers["dlq.attempts"] == b"1" and copy.headers["dlq.error.type"] == b"KeyError"


def test_commit_never_passes_a_record_still_in_retry(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(b"k%d" % index, b"%d" % index) for index in range(6)])
    stop = threading.Event()

    def handle(record) -> None:
        if record.value == b"2":
            raise Flaky("not yet")
        if record.value == b"5":
            stop.set()

    with member(shared_broker.bootstrap, topic, "held") as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=1000, backoff_ms=50), stop=stop)
        assert stats.handled == 5 and stats.dead_lettered == 0
        assert committed(admin, "held", topic) == {0: 2}, "offset 2 is unresolved: nothing past it is committed"
        assert consumer.position(TopicPartition(topic, 0)) == 2, "the consumer is moved back to it"
        again = run_handler(consumer, lambda record: None, max_records=4)
        assert again.handled == 4
        assert committed(admin, "held", topic) == {0: 6}


def test_a_partition_is_committed_before_it_is_revoked_and_the_users_callback_runs(admin, shared_broker,
                                                                                   topic_name, monkeypatch):
    monkeypatch.setattr(handler_module, "COMMIT_INTERVAL_S", 3600.0)  # no periodic commit: only the one before revoking
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap) as producer:
        for index in range(20):
            producer.send(topic_name, b"%d" % index, partition=index % 2)
    seen: list[bytes] = []
    revoked: list[dict] = []

    def on_revoke(consumer, partitions) -> None:  # the user's: sees what the helper committed just before
        revoked.append(consumer.committed(partitions))

    stop = threading.Event()
    first = member(shared_broker.bootstrap, topic_name, "revoke", on_revoke=on_revoke)
    runner = threading.Thread(target=run_handler, args=(first, lambda record: seen.append(record.value)),
                              kwargs={"stop": stop})
    runner.start()
    try:
        wait_until(lambda: len(seen) == 20, 30, "the first member to handle every record")
        with member(shared_broker.bootstrap, topic_name, "revoke") as second:
            poll_until_assigned(second, 1)
            [moved] = second.assignment()
            assert revoked == [{moved: 10}], "committed through the last record before it moved"
            assert second.position(moved) == 10
    finally:
        stop.set()
        runner.join(timeout=30)
        first.close()


def test_max_records_then_timeout_stop_and_the_consumer_goes_on(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(None, b"%d" % index) for index in range(10)])
    seen: list[bytes] = []
    with member(shared_broker.bootstrap, topic, "limits") as consumer:
        first = run_handler(consumer, lambda record: seen.append(record.value), max_records=4)
        assert first.handled == 4 and seen == [b"0", b"1", b"2", b"3"]
        assert committed(admin, "limits", topic) == {0: 4}
        assert consumer.position(TopicPartition(topic, 0)) == 4, "records polled past the limit come again"
        rest = run_handler(consumer, lambda record: seen.append(record.value), timeout=1.0)
        assert rest.handled == 6 and seen == [b"%d" % index for index in range(10)]
        assert committed(admin, "limits", topic) == {0: 10}


def test_timeout_finishes_the_retries_of_records_taken(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(None, b"warm-up"), (b"a", b"poison"), (b"a", b"2")])
    calls: list[bytes] = []

    def handle(record) -> None:
        calls.append(record.value)
        if record.value == b"poison":
            raise Flaky("always")

    with member(shared_broker.bootstrap, topic, "drain") as consumer:
        assert run_handler(consumer, handle, max_records=1).handled == 1  # joined: the next poll has records
        stats = run_handler(consumer, handle, retry=Retry(attempts=3, backoff_ms=400), timeout=0.5)
    assert stats == HandlerStats(handled=1, retried=2, dead_lettered=1), "the budget (1.2 s) outlasted the timeout"
    assert calls == [b"warm-up", b"poison", b"poison", b"poison", b"2"]
    assert committed(admin, "drain", topic) == {0: 3}


def test_batches_are_retried_whole_then_one_by_one(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(b"k%d" % index, b"%d" % index) for index in range(5)]
            + [(b"k1", b"poison")])
    batches: list[list[bytes]] = []

    def handle(records) -> None:
        batches.append([record.value for record in records])
        if b"poison" in batches[-1]:
            raise Flaky("the batch holds a poison record")

    with member(shared_broker.bootstrap, topic, "batches") as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=2, backoff_ms=10), batch=True, max_records=6)
    everything = [b"0", b"1", b"2", b"3", b"4", b"poison"]
    assert batches[:2] == [everything, everything]
    assert batches[2:] == [[value] for value in everything]
    assert stats == HandlerStats(handled=5, retried=7, dead_lettered=1)
    [copy] = read_partition(shared_broker.bootstrap, topic + ".dlq")
    assert copy.value == b"poison" and copy.headers["dlq.attempts"] == b"3"
    assert committed(admin, "batches", topic) == {0: 6}


def test_full_partition_is_paused_until_its_parked_records_resolve(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(b"a", b"poison")] + [(None, b"%d" % index) for index in range(1, 6)])
    calls: list[bytes] = []

    def handle(record) -> None:
        calls.append(record.value)
        if record.value == b"poison":
            raise Flaky("always")

    with member(shared_broker.bootstrap, topic, "paused", max_poll_records=1) as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=3, backoff_ms=30), max_records=6, max_parked=1)
    assert calls == [b"poison"] * 3 + [b"1", b"2", b"3", b"4", b"5"], "nothing more was taken while it was full"
    assert stats == HandlerStats(handled=5, retried=2, dead_lettered=1)


def test_undeserializable_record_is_dead_lettered_as_stored(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(b"a", b'{"n": 1}'), (b"a", b"not json"), (b"b", b'{"n": 3}'),
                                             (b"b", b'{"n": 4}')])
    seen: list[object] = []

    def handle(record) -> None:
        if record.value == {"n": 4}:
            raise KeyError("n")
        seen.append(record.value)

    with member(shared_broker.bootstrap, topic, "json", value_deserializer=JsonDeserializer()) as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=1), max_records=4)
    assert seen == [{"n": 1}, {"n": 3}]
    assert stats == HandlerStats(handled=2, retried=0, dead_lettered=2)
    copies = read_partition(shared_broker.bootstrap, topic + ".dlq")
    assert [(copy.value, copy.headers["dlq.error.type"], copy.headers["dlq.attempts"]) for copy in copies] == [
        (b"not json", b"DeserializationError", b"0"), (b'{"n": 4}', b"KeyError", b"1")], "the stored bytes"
    assert committed(admin, "json", topic) == {0: 4}


def test_a_previous_owners_dead_letters_are_not_written_again(admin, shared_broker, topic):
    """As if a member crashed after its dead-letter write was acknowledged and before its commit."""
    produce(shared_broker.bootstrap, topic, [(None, b"0"), (None, b"poison"), (None, b"2")])
    admin.create_topic(topic + ".dlq", partitions=1)
    with Producer(shared_broker.bootstrap) as producer:
        producer.send(topic + ".dlq", b"poison", headers={
            "dlq.topic": topic.encode(), "dlq.partition": b"0", "dlq.offset": b"1", "dlq.offset.max": b"1",
            "dlq.group": b"dedupe", "dlq.error.type": b"RuntimeError", "dlq.error": b"x", "dlq.attempts": b"3",
            "dlq.time": b"1"}).result()
    calls: list[bytes] = []

    def handle(record) -> None:
        calls.append(record.value)
        if record.value == b"poison":
            raise RuntimeError("x")

    with member(shared_broker.bootstrap, topic, "dedupe") as consumer:
        stats = run_handler(consumer, handle, max_records=3)
    assert calls == [b"0", b"2"]
    assert stats == HandlerStats(handled=2, retried=0, dead_lettered=1)
    assert len(read_partition(shared_broker.bootstrap, topic + ".dlq")) == 1


def test_reading_back_stops_only_below_every_copy_a_writer_knew(admin, shared_broker, topic):
    """Copies of offsets 20 (first owner), then 12 (second owner, who knew of 20); committed 15: 20 is found.
    Copies another group left in the same dead-letter topic do not count."""
    admin.create_topic(topic + ".dlq", partitions=1)
    with Producer(shared_broker.bootstrap) as producer:
        for offset, offset_max in ((3, 3), (20, 20), (12, 20)):
            producer.send(topic + ".dlq", b"v", headers={
                "dlq.topic": topic.encode(), "dlq.partition": b"0", "dlq.offset": b"%d" % offset,
                "dlq.offset.max": b"%d" % offset_max, "dlq.group": b"payments"})
            producer.send(topic + ".dlq", b"v", headers={
                "dlq.topic": topic.encode(), "dlq.partition": b"0", "dlq.offset": b"%d" % (offset + 1),
                "dlq.offset.max": b"%d" % (offset + 1), "dlq.group": b"notifications"})
            producer.send(topic + ".dlq", b"other", headers={
                "dlq.topic": b"elsewhere", "dlq.partition": b"0", "dlq.offset": b"99", "dlq.offset.max": b"99"})
        producer.flush()
    writer = DeadLetterWriter(shared_broker.bootstrap, "payments", None)
    try:
        assert writer.already_dead_lettered(TopicPartition(topic, 0), 15) == {20}
        assert writer.already_dead_lettered(TopicPartition(topic, 0), 3) == {3, 12, 20}
        assert writer.already_dead_lettered(TopicPartition(topic, 0), 21) == set()
    finally:
        writer.close()


def test_bad_arguments_raise_typed_errors_and_lose_nothing(admin, shared_broker, topic):
    produce(shared_broker.bootstrap, topic, [(None, b"0")])
    with member(shared_broker.bootstrap, topic, "bad") as consumer:
        for wrong, error in [({"handle": "not callable"}, TypeError), ({"retry": 3}, TypeError),
                             ({"max_records": 0}, ValueError), ({"max_records": True}, TypeError),
                             ({"timeout": -1}, ValueError), ({"timeout": float("nan")}, ValueError),
                             ({"batch": "yes"}, TypeError), ({"dead_letter_topic": "no spaces"}, ValueError),
                             ({"dead_letter_topic": 7}, TypeError), ({"producer": "p"}, TypeError),
                             ({"stop": True}, TypeError), ({"max_parked": 0}, ValueError),
                             ({"max_parked": None}, TypeError)]:
            arguments = {"handle": lambda record: None, **wrong}
            with pytest.raises(error):
                run_handler(consumer, arguments.pop("handle"), **arguments)
        with pytest.raises(TypeError):
            run_handler("consumer", lambda record: None)
        for settings in [{"attempts": 0}, {"backoff_ms": -1}, {"backoff_max_ms": 5, "backoff_ms": 10},
                         {"multiplier": 0.5}, {"retry_on": ()}]:
            with pytest.raises(ValueError):
                Retry(**settings)
        for settings in [{"attempts": "3"}, {"retry_on": int}, {"multiplier": "2"}]:
            with pytest.raises(TypeError):
                Retry(**settings)
        assert run_handler(consumer, lambda record: None, max_records=1).handled == 1, "nothing was lost"
    with Consumer(shared_broker.bootstrap, group_id="bad-auto", topics=[topic]) as auto_committing:
        with pytest.raises(InvalidConfigError, match="enable_auto_commit=False"):
            run_handler(auto_committing, lambda record: None)
    with Consumer(shared_broker.bootstrap, topics=[topic]) as groupless:
        with pytest.raises(InvalidConfigError, match="group_id"):
            run_handler(groupless, lambda record: None)
    with member(shared_broker.bootstrap, "t" * 246, "bad-name") as long_named:
        with pytest.raises(InvalidTopicError, match="dead_letter_topic"):
            run_handler(long_named, lambda record: None)


def test_retry_backoff_grows_by_the_multiplier_up_to_its_cap():
    policy = Retry(attempts=100_000, backoff_ms=100, backoff_max_ms=1_000, multiplier=3.0, retry_on=Flaky)
    assert [policy.backoff_s(made) for made in (1, 2, 3, 4, 50_000)] == [0.1, 0.3, 0.9, 1.0, 1.0]
    assert policy.retries(Flaky(), 99_999) and not policy.retries(Flaky(), 100_000)
    assert not policy.retries(KeyError(), 1), "only retry_on exceptions are retried"
    assert Retry(attempts=1).retries(Exception(), 1) is False
