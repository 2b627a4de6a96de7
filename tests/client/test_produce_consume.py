"""Producer and Consumer against a real broker: the client API of the README, exactly."""

from __future__ import annotations

import threading

import pytest
from rill.client import Consumer, Producer, RecordMetadata, TopicPartition
from rill.client.errors import ProducerClosedError
from rill.client.partitioner import partition_for_key


def consume(bootstrap: str, topics: list[str], expected: int, **settings) -> list:
    records: list = []
    with Consumer(bootstrap, topics=topics, auto_offset_reset="earliest", **settings) as consumer:
        for _ in range(200):
            records += consumer.poll(timeout=0.2)
            if len(records) >= expected:
                break
    return records


def test_readme_example(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=3, replication_factor=1, config={"retention.ms": 604800000})
    assert topic_name in admin.list_topics()
    with Producer(shared_broker.bootstrap, acks="all", linger_ms=5, batch_size=65536, compression="lz4") as p:
        fut = p.send(topic_name, value=b"...", key=b"101", headers={"type": b"OrderCreated"})
        md = fut.result(timeout=10)
        p.flush()
    assert md == RecordMetadata(topic_name, partition_for_key(b"101", 3), 0, md.timestamp)
    with Consumer(shared_broker.bootstrap, topics=[topic_name], auto_offset_reset="earliest") as c:
        records = []
        for _ in range(50):
            records += c.poll(timeout=1.0)
            if records:
                break
    assert len(records) == 1
    rec = records[0]
    assert (rec.topic, rec.partition, rec.offset, rec.key, rec.value) == (topic_name, md.partition, 0, b"101", b"...")
    assert dict(rec.headers) == {"type": b"OrderCreated"}
    assert rec.timestamp == md.timestamp


@pytest.mark.parametrize("acks", [0, 1, "all", -1])
def test_every_acks_setting_delivers(admin, shared_broker, topic_name, acks):
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap, acks=acks) as producer:
        futures = [producer.send(topic_name, b"v%d" % i, key=b"k%d" % i) for i in range(500)]
        producer.flush()
    stored = [future.result(timeout=10) for future in futures]
    if acks == 0:
        assert {metadata.offset for metadata in stored} == {-1}
    else:
        assert len({(metadata.partition, metadata.offset) for metadata in stored}) == 500
    assert sorted(r.value for r in consume(shared_broker.bootstrap, [topic_name], 500)) == sorted(
        b"v%d" % i for i in range(500))


def test_keys_go_to_kafkas_partition_and_keep_order(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=5)
    keys = [b"customer-%d" % (i % 13) for i in range(1_000)]
    with Producer(shared_broker.bootstrap, linger_ms=2, batch_size=2_000) as producer:
        futures = [producer.send(topic_name, b"%d" % i, key=key) for i, key in enumerate(keys)]
        producer.flush()
    for key, future in zip(keys, futures):
        assert future.result().partition == partition_for_key(key, 5)
    records = consume(shared_broker.bootstrap, [topic_name], 1_000)
    assert len(records) == 1_000
    per_key: dict[bytes, list[int]] = {}
    for record in records:
        assert record.partition == partition_for_key(record.key, 5)
        per_key.setdefault(record.key, []).append(int(record.value))
    for sequence in per_key.values():
        assert sequence == sorted(sequence)


def test_partition_offsets_are_dense_and_ordered(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=1)
    with Producer(shared_broker.bootstrap, batch_size=1_000) as producer:
        futures = [producer.send(topic_name, b"%d" % i) for i in range(2_000)]
        producer.flush()
    assert [f.result().offset for f in futures] == list(range(2_000))
    records = consume(shared_broker.bootstrap, [topic_name], 2_000, max_poll_records=333)
    assert [r.offset for r in records] == list(range(2_000))
    assert [r.value for r in records] == [b"%d" % i for i in range(2_000)]


def test_unkeyed_records_stick_to_one_partition_per_batch(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=4)
    with Producer(shared_broker.bootstrap, linger_ms=1_000, batch_size=1_000_000) as producer:
        futures = [producer.send(topic_name, b"x") for _ in range(50)]
        producer.flush()
    assert len({f.result().partition for f in futures}) == 1


def test_explicit_partition_and_timestamp(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=3)
    with Producer(shared_broker.bootstrap) as producer:
        metadata = producer.send(topic_name, b"v", partition=2, timestamp_ms=1_234_567).result(10)
    assert (metadata.partition, metadata.timestamp) == (2, 1_234_567)
    [record] = consume(shared_broker.bootstrap, [topic_name], 1)
    assert (record.partition, record.timestamp) == (2, 1_234_567)


def test_null_value_and_empty_value(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap) as producer:
        producer.send(topic_name, None, key=b"tombstone")
        producer.send(topic_name, b"")
    records = consume(shared_broker.bootstrap, [topic_name], 2)
    assert [(r.key, r.value) for r in records] == [(b"tombstone", None), (None, b"")]


def test_many_threads_share_one_producer(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=3)
    with Producer(shared_broker.bootstrap) as producer:
        def work(thread: int) -> None:
            for i in range(300):
                producer.send(topic_name, b"%d-%d" % (thread, i))
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        producer.flush(timeout=30)
    assert len(consume(shared_broker.bootstrap, [topic_name], 1_200)) == 1_200


def test_send_after_close_fails(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    producer = Producer(shared_broker.bootstrap)
    producer.close()
    with pytest.raises(ProducerClosedError):
        producer.send(topic_name, b"late")


def test_callbacks_fire_once_acknowledged(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    done = threading.Event()
    seen: list = []
    with Producer(shared_broker.bootstrap) as producer:
        future = producer.send(topic_name, b"v")
        future.add_done_callback(lambda f: (seen.append(f.result().offset), done.set()))
        assert done.wait(10)
    assert seen == [0] and future.done() and future.exception() is None


def test_latest_skips_old_records_and_long_poll_wakes_on_new_ones(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap) as producer:
        producer.send(topic_name, b"old").result(10)
        with Consumer(shared_broker.bootstrap, topics=[topic_name], auto_offset_reset="latest",
                      fetch_max_wait_ms=5_000) as consumer:
            assert consumer.position(TopicPartition(topic_name, 0)) == 1
            producer.send(topic_name, b"new").result(10)
            records = []
            for _ in range(50):
                records += consumer.poll(0.2)
                if records:
                    break
    assert [r.value for r in records] == [b"new"]


def test_seek_assign_and_offsets_for_times(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap, batch_size=100) as producer:
        for i in range(100):
            producer.send(topic_name, b"%d" % i, partition=1, timestamp_ms=1_000 + i * 10)
    partition = TopicPartition(topic_name, 1)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([partition])
        assert consumer.assignment() == {partition}
        assert consumer.beginning_offsets([partition]) == {partition: 0}
        assert consumer.end_offsets([partition]) == {partition: 100}
        assert consumer.offsets_for_times({partition: 1_505}) == {partition: 51}
        assert consumer.offsets_for_times({partition: 99_999}) == {partition: None}
        consumer.seek(partition, 42)
        records = []
        for _ in range(50):
            records += consumer.poll(0.2)
            if len(records) >= 58:
                break
        assert [r.offset for r in records] == list(range(42, 100))
        consumer.seek_to_beginning()
        assert consumer.position(partition) == 0


def test_pause_and_resume(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap) as producer:
        for partition in (0, 1):
            producer.send(topic_name, b"p%d" % partition, partition=partition)
    with Consumer(shared_broker.bootstrap, topics=[topic_name], auto_offset_reset="earliest") as consumer:
        consumer.pause([TopicPartition(topic_name, 0)])
        records = []
        for _ in range(20):
            records += consumer.poll(0.1)
        assert [r.value for r in records] == [b"p1"]
        consumer.resume([TopicPartition(topic_name, 0)])
        for _ in range(50):
            records += consumer.poll(0.1)
            if len(records) == 2:
                break
    assert sorted(r.value for r in records) == [b"p0", b"p1"]


def test_describe_and_delete_topic(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2, config={"retention.bytes": 1_000_000})
    with Producer(shared_broker.bootstrap) as producer:
        for i in range(10):
            producer.send(topic_name, b"v", partition=i % 2)
    description = admin.describe_topic(topic_name)
    assert description.name == topic_name
    assert description.config["retention.bytes"] == "1000000"
    assert description.config["retention.ms"] == "604800000"
    assert [(p.partition, p.leader, p.replicas, p.isr, p.high_watermark) for p in description.partitions] == [
        (0, 1, [1], [1], 5), (1, 1, [1], [1], 5)]
    admin.delete_topic(topic_name)
    assert topic_name not in admin.list_topics()
    admin.create_topic(topic_name, partitions=1)
    assert admin.describe_topic(topic_name).partitions[0].high_watermark == 0
