"""The columnar bulk API against a real broker: Producer.send_many and Consumer.poll_batch.

send_many's records go where send's would (keys by murmur2, ``partition=``,
or sticky batch-sized chunks), come back from poll_batch and from poll alike,
with headers, from numpy and pyarrow columns too; bad input fails the call
with nothing queued; the BatchFuture reports offsets in input order and
errors like the per-record future. poll_batch behaves as poll: positions and
commits, max_records, pause, deserializers, and mixing with poll.
"""

from __future__ import annotations

import random
import struct
import threading
from array import array

import pytest
from brokers import poll_until_error
from crc32c import crc32c
from rill.client import (
    Consumer,
    JsonDeserializer,
    JsonSerializer,
    Producer,
    TopicPartition,
)
from rill.client.batch import (
    COMPRESSION_LZ4,
    CRC_START,
    HEADER_SIZE,
    LOG_OVERHEAD,
    encode_batch,
    patched_prefix,
)
from rill.client.batch_future import BatchFuture, BatchMetadata
from rill.client.errors import (
    CorruptRecordError,
    DeserializationError,
    RecordTooLargeError,
    RequestTimeoutError,
    SerializationError,
    UnknownTopicError,
)
from rill.client.int_columns import counting, is_zero, shifted
from rill.client.partitioner import partition_for_key
from rill.client.record_columns import RecordColumns

FAST = {"fetch_max_wait_ms": 50}


def values_of(count: int, prefix: bytes = b"v") -> list[bytes]:
    return [prefix + b"%05d" % number for number in range(count)]


def poll_columns(consumer: Consumer, expected: int, **options) -> list[RecordColumns]:
    """poll_batch until ``expected`` records came (or 200 polls)."""
    got: list[RecordColumns] = []
    for _ in range(200):
        got += consumer.poll_batch(0.1, **options)
        if sum(map(len, got)) >= expected:
            break
    return got


def read_columns(bootstrap: str, topic: str, expected: int, **settings) -> list[RecordColumns]:
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", **FAST, **settings) as consumer:
        return poll_columns(consumer, expected)


def read_records(bootstrap: str, topic: str, expected: int) -> list:
    records: list = []
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", **FAST) as consumer:
        for _ in range(200):
            records += consumer.poll(0.1)
            if len(records) >= expected:
                break
    return records


def flat(columns: list[RecordColumns], field: str, partition: int | None = None) -> list:
    return [item for part in columns if partition in (None, part.partition) for item in getattr(part, field)]


@pytest.fixture
def producer(shared_broker):
    with Producer(shared_broker.bootstrap, linger_ms=2) as client:
        yield client


# ---- send_many ------------------------------------------------------------------------------


def test_send_many_round_trips_through_poll_batch_and_poll(admin, shared_broker, producer, topic_name):
    admin.create_topic(topic_name, partitions=1)
    values = values_of(3000)
    keys = [b"k%d" % (number % 7) for number in range(3000)]
    future = producer.send_many(topic_name, values, keys=keys, headers={"type": b"OrderCreated"})
    assert isinstance(future, BatchFuture) and len(future) == 3000
    metadata = future.get(timeout=30)
    assert isinstance(metadata, BatchMetadata) and metadata.topic == topic_name
    assert list(metadata.offsets) == list(range(3000)) and set(metadata.partitions) == {0}
    assert future.done() and future.is_done and future.succeeded() and future.exception() is None

    columns = read_columns(shared_broker.bootstrap, topic_name, 3000)
    assert all(isinstance(part, RecordColumns) and part.topic == topic_name for part in columns)
    assert flat(columns, "offsets") == list(range(3000))
    assert flat(columns, "values") == values and flat(columns, "keys") == keys
    assert flat(columns, "timestamps") == [metadata.timestamp] * 3000
    assert {dict(headers)["type"] for headers in flat(columns, "headers")} == {b"OrderCreated"}

    records = read_records(shared_broker.bootstrap, topic_name, 3000)
    assert [(r.offset, r.key, r.value, dict(r.headers)) for r in records] == [
        (offset, key, value, {"type": b"OrderCreated"}) for offset, (key, value) in enumerate(zip(keys, values))]


def test_keyed_records_go_where_send_puts_them(admin, shared_broker, producer, topic_name):
    admin.create_topic(topic_name, partitions=4)
    keys = [b"customer-%d" % (number % 37) for number in range(400)] + [None]
    values = values_of(len(keys))
    metadata = producer.send_many(topic_name, values, keys=keys).get(timeout=30)
    futures = [producer.send(topic_name, b"x", key=key) for key in keys[:-1]]
    sent_one_by_one = [future.result(timeout=30).partition for future in futures]
    assert list(metadata.partitions[:-1]) == [partition_for_key(key, 4) for key in keys[:-1]] == sent_one_by_one
    assert 0 <= metadata.partitions[-1] < 4
    for partition in range(4):  # each partition's records in input order, offsets following each other
        mine = [offset for p, offset in zip(metadata.partitions, metadata.offsets) if p == partition]
        assert mine == list(range(mine[0], mine[0] + len(mine)))
    columns = read_columns(shared_broker.bootstrap, topic_name, 2 * len(keys) - 1)
    for part in columns:
        for offset, key, value in zip(part.offsets, part.keys, part.values):
            if value != b"x":
                index = int(value[1:])
                assert (metadata.partitions[index], metadata.offsets[index], keys[index]) == \
                    (part.partition, offset, key)


def test_partition_argument_puts_every_record_there(admin, producer, topic_name):
    admin.create_topic(topic_name, partitions=3)
    metadata = producer.send_many(topic_name, values_of(50), keys=[b"a"] * 50, partition=2).get(timeout=30)
    assert set(metadata.partitions) == {2} and list(metadata.offsets) == list(range(50))


def test_unkeyed_records_fill_one_partitions_batch_after_another(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=4)
    with Producer(shared_broker.bootstrap, batch_size=1_000, linger_ms=50) as producer:
        metadata = producer.send_many(topic_name, [b"x" * 100] * 200).get(timeout=30)
    runs = [1]
    for before, after in zip(metadata.partitions, metadata.partitions[1:]):
        if before == after:
            runs[-1] += 1
        else:
            runs.append(1)
    assert len(set(metadata.partitions)) > 1, "spread over the partitions"
    # as with send: a batch (61 bytes of header, 116 a record) closes with the record that brings it to 1,000
    assert runs[:-1] == [9] * (len(runs) - 1) and runs[-1] <= 9, runs


def test_values_only_batches_built_whole_mix_with_send(admin, shared_broker, topic_name):
    """Records with values only fill new batches as prebuilt payloads (batch.values_payload); a batch that send
    opened, and the last, still open one, keep record lists: all read back in order, idempotent offsets."""
    admin.create_topic(topic_name, partitions=1)
    values = [b"x%04d" % number * (number % 3 + 1) for number in range(500)]
    with Producer(shared_broker.bootstrap, batch_size=1_000, linger_ms=50) as producer:
        first = producer.send(topic_name, b"before", key=b"k")
        metadata = producer.send_many(topic_name, values).get(timeout=30)
        last = producer.send(topic_name, b"after", key=b"k").result(timeout=30)
    assert first.result(timeout=30).offset == 0 and last.offset == 501
    assert list(metadata.offsets) == list(range(1, 501)) and set(metadata.partitions) == {0}
    columns = read_columns(shared_broker.bootstrap, topic_name, 502)
    assert flat(columns, "values") == [b"before", *values, b"after"]
    assert flat(columns, "keys") == [b"k", *[None] * 500, b"k"]
    assert flat(columns, "timestamps")[1:501] == [metadata.timestamp] * 500
    records = read_records(shared_broker.bootstrap, topic_name, 502)
    assert [record.value for record in records] == [b"before", *values, b"after"]


def test_per_record_headers_and_acks_0(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    headers = [{"n": b"%d" % number} if number % 2 else None for number in range(10)]
    with Producer(shared_broker.bootstrap, acks=0) as producer:
        future = producer.send_many(topic_name, values_of(10), headers=headers)
        producer.flush()
        assert set(future.get(timeout=30).offsets) == {-1}
    records = read_records(shared_broker.bootstrap, topic_name, 10)
    assert [dict(record.headers) for record in records] == [header or {} for header in headers]
    columns = read_columns(shared_broker.bootstrap, topic_name, 10)
    assert [dict(header) for header in flat(columns, "headers")] == [header or {} for header in headers]


def test_numpy_columns(admin, shared_broker, producer, topic_name):
    numpy = pytest.importorskip("numpy", reason="numpy is not installed")
    admin.create_topic(topic_name, partitions=1)
    objects = numpy.array(values_of(5) + [None], dtype=object)
    fixed = numpy.array(values_of(5), dtype="S6")
    producer.send_many(topic_name, objects, keys=fixed.tolist() + [b"k"]).get(timeout=30)
    producer.send_many(topic_name, fixed).get(timeout=30)
    columns = read_columns(shared_broker.bootstrap, topic_name, 11)
    assert flat(columns, "values") == values_of(5) + [None] + values_of(5)
    arrays = columns[0].to_numpy()
    assert arrays["offset"].tolist() == list(range(len(columns[0])))
    assert arrays["value"].tolist()[:6] == values_of(5) + [None]
    with pytest.raises(TypeError, match="numpy"):
        producer.send_many(topic_name, numpy.arange(3))


def test_pyarrow_columns(admin, shared_broker, producer, topic_name):
    pyarrow = pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    admin.create_topic(topic_name, partitions=1)
    producer.send_many(topic_name, pyarrow.array(values_of(3), pyarrow.binary())).get(timeout=30)
    producer.send_many(topic_name, pyarrow.array(["é", None], pyarrow.string()),
                       keys=pyarrow.chunked_array([[b"a"], [b"b"]], pyarrow.large_binary())).get(timeout=30)
    columns = read_columns(shared_broker.bootstrap, topic_name, 5)
    assert flat(columns, "values") == values_of(3) + ["é".encode(), None]
    table = columns[0].to_arrow()
    assert table.column("offset").to_pylist() == list(range(len(columns[0])))
    assert table.column("value").to_pylist()[:3] == values_of(3)
    with pytest.raises(TypeError, match="pyarrow"):
        producer.send_many(topic_name, pyarrow.array([1, 2]))


def test_a_poll_batch_column_can_be_sent_again(admin, shared_broker, producer, topic_name):
    admin.create_topic(topic_name, partitions=1)
    producer.send_many(topic_name, values_of(20)).get(timeout=30)
    columns = read_columns(shared_broker.bootstrap, topic_name, 20)
    producer.send_many(topic_name, columns[0].values, keys=columns[0].keys).get(timeout=30)
    assert flat(read_columns(shared_broker.bootstrap, topic_name, 20 + len(columns[0])), "values") == \
        values_of(20) + list(columns[0].values)


@pytest.mark.parametrize("arguments, error, message", [
    ({"values": [b"a", "b"]}, TypeError, r"values\[1\] must be bytes"),
    ({"values": [b"a", 3]}, TypeError, r"values\[1\]"),
    ({"values": "ab"}, TypeError, "values must be a list"),
    ({"values": b"ab"}, TypeError, "values must be a list"),
    ({"values": {b"a"}}, TypeError, "values must be a list"),
    ({"values": [b"a", b"b"], "keys": [b"k"]}, ValueError, "keys has 1 items and values 2"),
    ({"values": [b"a"], "keys": ["k"]}, TypeError, r"keys\[0\]"),
    ({"values": [b"a", b"b"], "headers": [{"h": b"1"}]}, ValueError, "headers has 1 items"),
    ({"values": [b"a"], "headers": {"h": "not bytes"}}, TypeError, "bytes value"),
    ({"values": [b"a", b"b"], "headers": [{"h": b"1"}, 5]}, TypeError, "headers"),
    ({"values": [b"a"], "headers": 5}, TypeError, "headers"),
    ({"values": [b"a"], "partition": -1}, ValueError, "partition"),
    ({"values": [b"a"], "partition": "0"}, TypeError, "partition"),
    ({"values": [b"a"], "partition": 9}, UnknownTopicError, "partitions 0..1"),
    ({"values": [b"x" * 2_000_000]}, RecordTooLargeError, "max_request_size"),
])
def test_bad_input_fails_at_the_call_with_nothing_queued(admin, shared_broker, producer, topic_name, arguments,
                                                         error, message):
    admin.create_topic(topic_name, partitions=2)
    with pytest.raises(error, match=message):
        producer.send_many(topic_name, **{"values": [b"good"] * 3, **arguments})
    metrics = producer.metrics()
    assert (metrics["records_queued"], metrics["records_in_flight"], metrics["buffer_used_bytes"]) == (0, 0, 0)
    metadata = producer.send_many(topic_name, [b"after"], partition=0).get(timeout=30)
    assert list(metadata.offsets) == [0], "nothing of the bad call was stored"


def test_bad_topics_fail_at_the_call(shared_broker):
    with Producer(shared_broker.bootstrap, max_block_ms=2_000) as producer:
        with pytest.raises(TypeError, match="topic"):
            producer.send_many(5, [b"a"])
        with pytest.raises(ValueError):
            producer.send_many("bad topic!", [b"a"])
        with pytest.raises((UnknownTopicError, RequestTimeoutError)):
            producer.send_many("no-such-topic-for-send-many", [b"a"])


def test_serializers_apply_per_record_and_a_failure_queues_nothing(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, value_serializer=JsonSerializer(), key_serializer=str.encode) as producer:
        with pytest.raises(SerializationError):
            producer.send_many(topic_name, [{"n": 1}, {"bad": object()}], keys=["a", "b"])
        producer.send_many(topic_name, [{"n": 1}, None, {"n": 3}], keys=["a", "b", None]).get(timeout=30)
    columns = read_columns(shared_broker.bootstrap, topic_name, 3, value_deserializer=JsonDeserializer())
    assert flat(columns, "values") == [{"n": 1}, None, {"n": 3}] and flat(columns, "keys") == [b"a", b"b", None]
    assert flat(columns, "offsets") == [0, 1, 2]


def test_batch_future_errors_and_callbacks(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1, config={"max.message.bytes": 2_000})
    seen: dict[str, object] = {}
    done = threading.Event()
    with Producer(shared_broker.bootstrap, linger_ms=0, compression="none") as producer:
        future = producer.send_many(topic_name, [b"x" * 5_000, b"small"])
        future.add_callback(lambda metadata: seen.setdefault("callback", metadata))
        future.add_errback(lambda error: seen.setdefault("errback", error))
        future.add_done_callback(lambda fut: done.set())
        with pytest.raises(RecordTooLargeError):
            future.get(timeout=30)
        assert done.wait(10) and future.done() and not future.succeeded()
        assert isinstance(future.exception(), RecordTooLargeError)
        assert "callback" not in seen and isinstance(seen["errback"], RecordTooLargeError)
        ok = producer.send_many(topic_name, [b"a", b"b"])
        got: list = []
        ok.get(timeout=30)
        ok.add_callback(got.append)  # done already: runs at once, on this thread
        assert list(got[0].offsets) == [0, 1]
        with pytest.raises(TypeError):
            ok.add_callback("not callable")


def test_flush_waits_for_send_many_and_get_times_out_before(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, linger_ms=60_000) as producer:
        future = producer.send_many(topic_name, values_of(10))
        with pytest.raises(RequestTimeoutError):
            future.get(timeout=0)
        assert not future.done()
        producer.flush(timeout=30)
        assert future.done() and list(future.get().offsets) == list(range(10))


# ---- poll_batch ------------------------------------------------------------------------------


def test_poll_batch_max_records_mixed_with_poll_and_group_commits(admin, shared_broker, producer, topic_name):
    admin.create_topic(topic_name, partitions=1)
    producer.send_many(topic_name, values_of(300)).get(timeout=30)
    tp = TopicPartition(topic_name, 0)
    got: list[int] = []
    with Consumer(shared_broker.bootstrap, group_id=topic_name, topics=[topic_name], auto_offset_reset="earliest",
                  enable_auto_commit=False, max_poll_records=40, **FAST) as consumer:
        for turn in range(300):
            if len(got) >= 300:
                break
            if turn % 2:
                records = consumer.poll(0.1)
                assert len(records) <= 40
                got += [record.offset for record in records]
            else:
                columns = consumer.poll_batch(0.1, max_records=7)
                assert sum(map(len, columns)) <= 7
                got += flat(columns, "offsets")
            if got:
                assert consumer.position(tp) == got[-1] + 1
        assert got == list(range(300)), "every record once, in order"
        consumer.commit()
        assert consumer.committed([tp]) == {tp: 300}
        for bad, error in ((0, ValueError), (True, TypeError), ("3", TypeError)):
            with pytest.raises(error):
                consumer.poll_batch(0, max_records=bad)


def test_poll_batch_commit_covers_what_it_returned(admin, shared_broker, producer, topic_name):
    admin.create_topic(topic_name, partitions=1)
    producer.send_many(topic_name, values_of(50)).get(timeout=30)
    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, group_id=topic_name, topics=[topic_name], auto_offset_reset="earliest",
                  enable_auto_commit=False, **FAST) as consumer:
        columns = poll_columns(consumer, 1, max_records=10)
        assert sum(map(len, columns)) == 10
        consumer.commit()
        assert consumer.committed([tp]) == {tp: 10}


def test_poll_batch_skips_paused_partitions(admin, shared_broker, producer, topic_name):
    admin.create_topic(topic_name, partitions=2)
    producer.send_many(topic_name, values_of(10), partition=0).get(timeout=30)
    producer.send_many(topic_name, values_of(10), partition=1).get(timeout=30)
    with Consumer(shared_broker.bootstrap, topics=[topic_name], auto_offset_reset="earliest", **FAST) as consumer:
        consumer.pause([TopicPartition(topic_name, 0)])
        columns = poll_columns(consumer, 10)
        assert {part.partition for part in columns} == {1} and sum(map(len, columns)) == 10
        assert consumer.poll_batch(0.2) == []


def test_a_deserialization_error_stops_the_partition_after_the_records_before_it(admin, shared_broker, producer,
                                                                                 topic_name):
    admin.create_topic(topic_name, partitions=1)
    values = [b'{"n":%d}' % number for number in range(5)] + [b"not json"] + [b'{"n":6}']
    producer.send_many(topic_name, values).get(timeout=30)
    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, topics=[topic_name], auto_offset_reset="earliest",
                  value_deserializer=JsonDeserializer(), **FAST) as consumer:
        got: list = []
        for _ in range(100):
            try:
                got += consumer.poll_batch(0.1)
            except DeserializationError as error:
                assert (error.topic, error.partition, error.offset) == (topic_name, 0, 5)
                break
        else:
            pytest.fail("no DeserializationError")
        assert flat(got, "values") == [{"n": number} for number in range(5)]
        assert consumer.position(tp) == 5
        with pytest.raises(DeserializationError):
            consumer.poll_batch(0.1)
        _, error = poll_until_error(consumer, DeserializationError)  # poll agrees
        assert error.offset == 5
        consumer.seek(tp, 6)
        assert flat(poll_columns(consumer, 1), "values") == [{"n": 6}]


def test_empty_send_many_is_done_at_once(admin, producer, topic_name):
    admin.create_topic(topic_name, partitions=1)
    future = producer.send_many(topic_name, [])
    assert future.done() and len(future) == 0 and list(future.get(timeout=0).offsets) == []


def at_offset(batch: bytes, base_offset: int) -> bytes:
    """``batch`` as a leader stores it at ``base_offset``."""
    return patched_prefix(base_offset, len(batch) - LOG_OVERHEAD, 0) + batch[16:]


def garbage(batch: bytes) -> bytes:
    """``batch`` with its payload replaced by bytes that do not decode, its CRC made right again."""
    patched = bytearray(batch[:HEADER_SIZE] + bytes(range(256)) * ((len(batch) - HEADER_SIZE) // 256 + 1))
    del patched[len(batch):]
    struct.pack_into(">I", patched, CRC_START - 4, crc32c(bytes(patched[CRC_START:])))
    return bytes(patched)


@pytest.mark.parametrize("check_crcs", [True, False])
def test_a_corrupt_batch_stops_poll_batch_after_the_records_before_it(check_crcs):
    """The fetcher's columns path, fed a response by hand (no broker): good, garbage, good batches."""
    good = [at_offset(encode_batch(values_of(10), timestamps=[7] * 10, compression=COMPRESSION_LZ4), 0),
            at_offset(garbage(encode_batch(values_of(3, b"bad"), timestamps=[7] * 3)), 10),
            at_offset(encode_batch(values_of(5), timestamps=[7] * 5), 13)]
    tp = TopicPartition("t", 0)
    consumer = Consumer("127.0.0.1:1", check_crcs=check_crcs)  # never connects: only its fetcher is used
    try:
        consumer._subscriptions.assign([tp])
        consumer._subscriptions.seek(tp, 0)
        fetcher = consumer._fetcher
        fetcher._add_response(fetcher._buffer(tp, consumer._subscriptions.state(tp)), b"".join(good))
        first = fetcher.collect_columns(4)
        assert [list(part.offsets) for part in first] == [[0, 1, 2, 3]]
        assert flat(fetcher.collect_columns(100), "values") == values_of(10)[4:]
        for _ in range(2):
            with pytest.raises(CorruptRecordError) as raised:
                fetcher.collect_columns(100)
            assert (raised.value.topic, raised.value.partition, raised.value.offset) == ("t", 0, 10)
        with pytest.raises(CorruptRecordError):
            fetcher.collect(100)  # poll agrees
        assert consumer._subscriptions.state(tp).position == 10
    finally:
        consumer.close()


def test_a_buffer_full_after_some_records_fails_the_rest_in_the_future(admin, shared_broker, topic_name,
                                                                        monkeypatch):
    """buffer_memory full before the first slice: the call raises, nothing queued; after some slices (here
    the first partition's records): those are sent and the rest fail in the future."""
    admin.create_topic(topic_name, partitions=2)
    keys = [b"a", b"b", b"c", b"d"]
    assert len({partition_for_key(key, 2) for key in keys}) == 2
    with Producer(shared_broker.bootstrap, linger_ms=60_000) as producer:
        accumulator = producer._accumulator

        def full() -> None:
            raise RequestTimeoutError("buffer_memory stayed full for max_block_ms")

        monkeypatch.setattr(accumulator, "_wait_for_memory", full)
        monkeypatch.setattr(accumulator, "_buffer_memory", 1)
        future = producer.send_many(topic_name, values_of(4), keys=keys)  # open batch of partition 0 first
        with pytest.raises(RequestTimeoutError):
            producer.send_many(topic_name, values_of(4))
        monkeypatch.undo()
        producer.flush(timeout=30)
        assert isinstance(future.exception(timeout=30), RequestTimeoutError) and not future.succeeded()
    queued = [value for part in read_columns(shared_broker.bootstrap, topic_name, 2) for value in part.values]
    assert sorted(queued) == sorted(value for value, key in zip(values_of(4), keys) if partition_for_key(key, 2) == 0)


def test_int_columns_match_a_step_per_item():
    """The lane arithmetic behind poll_batch's timestamps and BatchMetadata's offsets, negatives included."""
    rng = random.Random(5)
    for _ in range(2000):
        amount = rng.choice([0, 1_700_000_000_000, 2**62, -5])
        column = array("q", [rng.choice([0, 1, 99, 128, 255, 256, -3, 2**62 - 1]) for _ in range(rng.randrange(40))])
        assert list(shifted(column, amount)) == [amount + item for item in column]
        assert is_zero(column) == (set(column) <= {0})
    for start, count in ((0, 0), (5, 10), (10**12, 5_000), (2**63 - 3, 3)):
        assert list(counting(start, count)) == list(range(start, start + count))
