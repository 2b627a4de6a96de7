"""Retention on a running broker: whole old segments go, the log start moves, consumers start there."""

from __future__ import annotations

from brokers import wait_until
from rill.client import Consumer, Producer, TopicPartition


def test_retention_bytes_deletes_old_segments(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, config={"segment.bytes": 2_000, "retention.bytes": 4_000})
    with Producer(shared_broker.bootstrap, batch_size=500, linger_ms=0, compression="none") as producer:
        for i in range(300):
            producer.send(topic_name, b"%05d" % i + b"." * 50)
    start = wait_until(lambda: admin.describe_topic(topic_name).partitions[0].log_start_offset or None, 30,
                       "the retention check to delete segments")
    partition = admin.describe_topic(topic_name).partitions[0]
    assert 0 < start < partition.high_watermark == 300
    with Consumer(shared_broker.bootstrap, topics=[topic_name], auto_offset_reset="earliest") as consumer:
        records = []
        for _ in range(100):
            records += consumer.poll(0.2)
            if records and records[-1].offset == 299:
                break
    assert records[0].offset >= start
    assert [r.offset for r in records] == list(range(records[0].offset, 300))


def test_retention_ms_deletes_segments_with_old_timestamps(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, config={"segment.bytes": 1_000, "retention.ms": 60_000})
    with Producer(shared_broker.bootstrap, batch_size=200, linger_ms=0, compression="none") as producer:
        for i in range(50):
            producer.send(topic_name, b"." * 100, timestamp_ms=1_000 + i)  # long expired
        producer.send(topic_name, b"fresh")  # now: stays, and keeps the active segment
    wait_until(lambda: admin.describe_topic(topic_name).partitions[0].log_start_offset >= 40, 30,
               "old segments to expire")
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest") as consumer:
        partition = TopicPartition(topic_name, 0)
        consumer.assign([partition])
        assert consumer.beginning_offsets([partition])[partition] >= 40
        assert consumer.end_offsets([partition])[partition] == 51
