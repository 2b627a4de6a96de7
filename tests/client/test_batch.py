"""Round trips and corruption checks of the columnar record batch (client/batch.py)."""

from __future__ import annotations

import os
import struct

import pytest
from rill.client import batch
from rill.client.errors import CorruptRecordError, RecordTooLargeError
from rill.client.types import EMPTY_HEADERS

CODECS = [batch.COMPRESSION_NONE, batch.COMPRESSION_LZ4]


def round_trip(values, keys=None, timestamps=None, headers=None, compression=batch.COMPRESSION_NONE):
    encoded = batch.encode_batch(values, keys, timestamps, headers, compression)
    return encoded, batch.decode_batch(encoded, "orders", 2)


@pytest.mark.parametrize("compression", CODECS)
def test_one_record_round_trip(compression):
    encoded, records = round_trip([b"hello"], [b"k"], [1_700_000_000_123], [{"type": b"OrderCreated"}], compression)
    assert len(records) == 1
    record = records[0]
    assert (record.topic, record.partition, record.offset) == ("orders", 2, 0)
    assert (record.key, record.value, record.timestamp) == (b"k", b"hello", 1_700_000_000_123)
    assert dict(record.headers) == {"type": b"OrderCreated"}
    header = batch.check_batch(encoded)
    assert header.magic == batch.MAGIC and header.record_count == 1 and header.size == len(encoded)


@pytest.mark.parametrize("compression", CODECS)
def test_hundred_thousand_records_round_trip(compression):
    count = 100_000
    values = [b"order-%d" % i * (i % 5) for i in range(count)]
    keys = [str(i % 977).encode() for i in range(count)]
    timestamps = [1_700_000_000_000 + i for i in range(count)]
    encoded, records = round_trip(values, keys, timestamps, None, compression)
    assert [r.value for r in records] == values
    assert [r.key for r in records] == keys
    assert [r.timestamp for r in records] == timestamps
    assert [r.offset for r in records] == list(range(count))
    header = batch.read_header(encoded)
    assert header.max_timestamp == timestamps[-1] and header.last_offset_delta == count - 1


@pytest.mark.parametrize("compression", CODECS)
@pytest.mark.parametrize("size", [0, 1, 100])
def test_same_size_columns_round_trip(compression, size):
    """Columns of one item size are cut by one struct call: same records, each its own bytes object."""
    values = [os.urandom(size) for _ in range(300)]
    keys = [b"%04d" % i for i in range(300)]
    headers = [{"h": b"xy"}] * 300
    _, records = round_trip(values, keys, list(range(300)), headers, compression)
    assert [r.value for r in records] == values and [r.key for r in records] == keys
    assert all(type(r.value) is bytes and type(r.key) is bytes for r in records)
    assert [dict(r.headers) for r in records] == headers


def test_null_and_empty_keys_and_values():
    values = [b"", None, b"v", b""]
    keys = [None, b"", b"k", None]
    _, records = round_trip(values, keys, [5, 6, 7, 8])
    assert [r.value for r in records] == values
    assert [r.key for r in records] == keys


def test_all_keys_null_stores_no_key_column():
    without_keys = batch.encode_batch([b"a", b"b"], None, [1, 1])
    with_keys = batch.encode_batch([b"a", b"b"], [None, None], [1, 1])
    assert len(without_keys) < len(with_keys)
    assert [r.key for r in batch.decode_batch(without_keys, "t", 0)] == [None, None]
    assert [r.key for r in batch.decode_batch(with_keys, "t", 0)] == [None, None]


def test_headers_on_some_records():
    headers = [{"a": b"1", "b": b""}, None, {}, {"c": b"3"}]
    _, records = round_trip([b"v"] * 4, None, [1, 2, 3, 4], headers)
    assert [dict(r.headers) for r in records] == [{"a": b"1", "b": b""}, {}, {}, {"c": b"3"}]
    assert records[1].headers is EMPTY_HEADERS


def test_timestamps_out_of_order_keep_exact_values():
    timestamps = [1_000, 500, 2_000_000_000_000, 0]
    encoded, records = round_trip([b"a"] * 4, None, timestamps)
    assert [r.timestamp for r in records] == timestamps
    assert batch.read_header(encoded).max_timestamp == max(timestamps)


def test_lz4_kept_only_when_it_shrinks():
    compressible = batch.encode_batch([b"x" * 1000] * 10, compression=batch.COMPRESSION_LZ4)
    random_bytes = batch.encode_batch([os.urandom(1000)], compression=batch.COMPRESSION_LZ4)
    assert batch.read_header(compressible).compression == batch.COMPRESSION_LZ4
    assert batch.read_header(random_bytes).compression == batch.COMPRESSION_NONE


def test_patched_offsets_keep_the_crc_valid():
    encoded = bytearray(batch.encode_batch([b"a", b"b", b"c"]))
    length = batch.read_header(encoded).batch_length
    encoded[:16] = batch.patched_prefix(41, length, 7)
    header = batch.check_batch(encoded)
    assert (header.base_offset, header.leader_epoch, header.last_offset) == (41, 7, 43)
    assert [r.offset for r in batch.decode_batch(encoded, "t", 0)] == [41, 42, 43]


@pytest.mark.parametrize("compression", CODECS)
def test_flipped_payload_byte_fails_the_crc(compression):
    encoded = bytearray(batch.encode_batch([b"value-%d" % i for i in range(50)], compression=compression))
    encoded[-5] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        batch.check_batch(encoded)
    with pytest.raises(CorruptRecordError):
        batch.decode_batch(encoded, "t", 0)


def test_wrong_crc_field():
    encoded = bytearray(batch.encode_batch([b"a"]))
    struct.pack_into(">I", encoded, 17, 12345)
    with pytest.raises(CorruptRecordError, match="CRC"):
        batch.check_batch(encoded)


@pytest.mark.parametrize("cut", [0, 10, 60, -1])
def test_truncated_batch(cut):
    encoded = batch.encode_batch([b"abc", b"def"])
    truncated = encoded[:cut]
    with pytest.raises(CorruptRecordError):
        batch.check_batch(truncated)


def test_kafka_magic_is_refused():
    encoded = bytearray(batch.encode_batch([b"a"]))
    encoded[16] = 2
    with pytest.raises(CorruptRecordError, match="magic"):
        batch.check_batch(encoded)


def test_lying_record_count_is_refused():
    encoded = bytearray(batch.encode_batch([b"a", b"b"]))
    struct.pack_into(">i", encoded, 57, 3)
    with pytest.raises(CorruptRecordError):
        batch.check_batch(encoded)


def test_column_lengths_beyond_payload_are_refused_even_with_a_valid_crc():
    payload = bytearray(batch.encode_payload([b"abc"], None, [0], None))
    struct.pack_into("<i", payload, 1, 1000)  # value length far past the end
    header = batch.read_header(batch.encode_batch([b"abc"]))
    with pytest.raises(CorruptRecordError):
        batch.decode_payload(header, memoryview(bytes(payload)))


def test_iter_batches_walks_concatenated_batches_and_limits_size():
    first = batch.encode_batch([b"a"] * 3)
    second = batch.encode_batch([b"b" * 500])
    positions = [position for position, _ in batch.iter_batches(first + second)]
    assert positions == [0, len(first)]
    with pytest.raises(RecordTooLargeError):
        list(batch.iter_batches(first + second, max_batch_size=len(second) - 1))
    with pytest.raises(CorruptRecordError):
        list(batch.iter_batches(first + second[:-1]))


def test_empty_batch_is_refused():
    with pytest.raises(ValueError):
        batch.encode_batch([])


def test_end_offset_is_after_the_last_batch():
    first = bytearray(batch.encode_batch([b"a", b"b", b"c"]))
    first[:16] = batch.patched_prefix(10, len(first) - batch.LOG_OVERHEAD, 0)
    second = bytearray(batch.encode_batch([b"d"]))
    second[:16] = batch.patched_prefix(20, len(second) - batch.LOG_OVERHEAD, 0)  # a gap, as compaction leaves
    assert batch.end_offset(bytes(first)) == 13
    assert batch.end_offset(bytes(first + second)) == 21
    with pytest.raises(ValueError):
        batch.end_offset(b"")
