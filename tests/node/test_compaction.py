"""Compaction on a running broker: closed segments of a compact topic keep the latest record per key."""

from __future__ import annotations

from pathlib import Path

from brokers import read_partition, wait_until
from rill.client import Producer

KEYS = 20
UPDATES = 30
PADDING = b"." * 100


def active_base_offset(partition_dir: Path) -> int:
    """The base offset of the newest segment (the active one), from the file names."""
    return max(int(path.name[: -len(".log")]) for path in partition_dir.glob("*.log"))


def log_bytes(partition_dir: Path) -> int:
    """Bytes of every segment file; a segment the cleaner deletes meanwhile counts as empty."""
    total = 0
    for path in partition_dir.glob("*.log"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def test_compaction_keeps_the_latest_value_of_each_key(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, config={"cleanup.policy": "compact", "segment.bytes": 2_000,
                                           "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": 0})
    latest: dict[bytes, bytes | None] = {}
    with Producer(shared_broker.bootstrap, batch_size=500, linger_ms=0, compression="none") as producer:
        producer.send(topic_name, b"soon deleted", key=b"gone")
        producer.send(topic_name, None, key=b"gone")  # a tombstone: with delete.retention.ms=0 it goes too
        for update in range(UPDATES):
            for key in range(KEYS):
                latest[b"k%d" % key] = b"%d:%d:" % (key, update) + PADDING
                producer.send(topic_name, latest[b"k%d" % key], key=b"k%d" % key)
    produced = 2 + KEYS * UPDATES
    partition_dir = shared_broker.partition_dir(topic_name, 0)

    def compacted() -> list | None:
        records = read_partition(shared_broker.bootstrap, topic_name, min_end_offset=produced)
        closed = [record for record in records if record.offset < active_base_offset(partition_dir)]
        keys = [record.key for record in closed]
        clean = closed and len(keys) == len(set(keys)) and b"gone" not in keys
        return records if clean and log_bytes(partition_dir) < produced * len(PADDING) / 4 else None

    records = wait_until(compacted, 60, "the closed segments to keep one record per key", interval_s=0.2)
    offsets = [record.offset for record in records]
    assert offsets == sorted(set(offsets)) and offsets[-1] == produced - 1
    assert len(records) < produced
    final = {}
    for record in records:
        final[record.key] = record.value
    assert final == latest  # every key's latest value is there, the tombstoned key is gone
