"""The records of ``__consumer_offsets``: one per committed offset, keyed so compaction keeps the latest.

key   = MessagePack [version, group, topic, partition]
value = MessagePack [offset, metadata, commit_timestamp_ms], or null (a tombstone: the offset is gone)

The coordinator writes them as ordinary batches (client/batch.py) and
replays a partition's batches to rebuild its groups' offsets when it
becomes the partition's leader.
"""

from __future__ import annotations

import time
from typing import Iterator

import msgspec
from rill.client import protocol
from rill.client.batch import COMPRESSION_NONE, decode_batch, encode_batch, iter_batches
from rill.client.types import TopicPartition

OFFSETS_TOPIC = protocol.OFFSETS_TOPIC
OFFSETS_PARTITIONS = 16
RECORD_VERSION = 1

_encoder = msgspec.msgpack.Encoder()
_key_decoder = msgspec.msgpack.Decoder(tuple[int, str, str, int])
_value_decoder = msgspec.msgpack.Decoder(tuple[int, str, int])


class OffsetRecord(msgspec.Struct, frozen=True):
    """One decoded commit: ``offset`` is None for a tombstone."""

    group_id: str
    partition: TopicPartition
    offset: int | None
    metadata: str


def partition_for(group_id: str) -> int:
    """The ``__consumer_offsets`` partition of a group: Kafka's abs(String.hashCode) % 16."""
    code = 0
    data = group_id.encode("utf-16-be")
    for index in range(0, len(data), 2):
        code = (31 * code + (data[index] << 8 | data[index + 1])) & 0xFFFFFFFF
    if code >= 1 << 31:
        code -= 1 << 32
    return (abs(code) if code != -(1 << 31) else 0) % OFFSETS_PARTITIONS


def commit_batch(group_id: str, offsets: list[tuple[TopicPartition, int | None, str]]) -> bytes:
    """One batch recording these commits (offset None: a tombstone that removes it)."""
    now = int(time.time() * 1000)
    keys = [_encoder.encode((RECORD_VERSION, group_id, tp.topic, tp.partition)) for tp, _, _ in offsets]
    values = [None if offset is None else _encoder.encode((offset, metadata, now)) for _, offset, metadata in offsets]
    return encode_batch(values, keys, [now] * len(offsets), compression=COMPRESSION_NONE)


def replay(data: bytes, partition: int) -> Iterator[OffsetRecord]:
    """The commits stored in ``data`` (whole batches read from the log), oldest first."""
    for position, _ in iter_batches(data):
        for record in decode_batch(data, OFFSETS_TOPIC, partition, position, check_crc=False):
            if record.key is None:
                continue
            version, group_id, topic, index = _key_decoder.decode(record.key)
            if version != RECORD_VERSION:
                continue
            if record.value is None:
                yield OffsetRecord(group_id, TopicPartition(topic, index), None, "")
            else:
                offset, metadata, _ = _value_decoder.decode(record.value)
                yield OffsetRecord(group_id, TopicPartition(topic, index), offset, metadata)
