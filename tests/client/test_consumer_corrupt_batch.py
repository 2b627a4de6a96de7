"""A corrupt batch in a partition: the consumer returns what comes before it, then stops there, as Kafka's does.

Against real brokers. A producer cannot store such a batch (the broker
checks the CRC and that the payload holds its record count), so the bad
batch is made on disk, in a stopped broker's segment file, as a failing
disk or a bug would make it: a batch whose payload is replaced by garbage
with its CRC made right again, or one with a byte flipped (its CRC then
fails). Either way ``poll`` returns every record
before the bad batch, then raises CorruptRecordError naming topic,
partition and offset on every poll until the application seeks past it;
no commit, automatic or by hand, passes it.
"""

from __future__ import annotations

import random
import struct
import time

import hypothesis_profiles  # noqa: F401 - registers and loads the hypothesis profiles
import pytest
import zmq
from brokers import poll_until_error, wait_until
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st
from rill.client import Admin, Consumer, Producer, TopicPartition, protocol
from rill.client.batch import (
    CRC_START,
    HEADER_SIZE,
    check_batch,
    check_payload,
    decode_batch,
    encode_batch,
    encode_payload,
    read_header,
)
from rill.client.errors import CorruptRecordError
from rill.client.network import NetworkClient

GOOD_BEFORE = 100
BAD_RECORDS = 5
GOOD_AFTER = 50
BAD_OFFSET = GOOD_BEFORE
AFTER_BAD = GOOD_BEFORE + BAD_RECORDS
END = AFTER_BAD + GOOD_AFTER
CRC_AT = 17  # the header's crc field: after base_offset i64, batch_length i32, leader_epoch i32, magic i8
LAST_OFFSET_DELTA_AT = 23  # after the crc u32 and the attributes i16
RECORD_COUNT_AT = 57  # the header's last field


def with_payload(batch: bytes, payload: bytes) -> bytes:
    """``batch`` with its payload replaced (same length) and its CRC made right again."""
    assert len(payload) == len(batch) - HEADER_SIZE
    patched = bytearray(batch[:HEADER_SIZE] + payload)
    struct.pack_into(">I", patched, CRC_AT, crc32c(bytes(patched[CRC_START:])))
    return bytes(patched)


def bad_records_batch() -> bytes:
    """The BAD_RECORDS records that become the bad batch on disk."""
    return encode_batch([b"bad-%d" % n for n in range(BAD_RECORDS)], timestamps=[int(time.time() * 1000)] * BAD_RECORDS)


def garbage_batch() -> bytes:
    """A batch of BAD_RECORDS records whose CRC is right and whose payload does not decode."""
    batch = bad_records_batch()
    garbage = with_payload(batch, random.Random(8).randbytes(len(batch) - HEADER_SIZE))
    check_batch(garbage)  # the CRC is right
    with pytest.raises(CorruptRecordError):
        decode_batch(garbage, "t", 0)
    return garbage


def write_partition_with_garbage_on_disk(broker, topic: str) -> None:
    """write_partition, then (broker stopped) the batch at BAD_OFFSET becomes garbage with a right CRC."""
    write_partition(broker.bootstrap, topic, bad_records_batch())
    broker.stop()  # a clean shutdown: on start the broker trusts its segments, so the garbage stays
    rewrite_batch(broker.partition_dir(topic, 0), BAD_OFFSET,
                  lambda batch: with_payload(batch, random.Random(8).randbytes(len(batch) - HEADER_SIZE)))
    broker.start()


def produce_answer(bootstrap: str, topic: str, batch: bytes) -> protocol.PartitionProduceResponse:
    """Send one batch as it is, the way a producer would; the broker's answer for its partition."""
    context = zmq.Context()
    network = NetworkClient(context, "corrupt-batch-test")
    try:
        request = protocol.ProduceRequest(-1, 10_000, [
            protocol.TopicProduceData(topic, [protocol.PartitionProduceData(0, batch)])])
        return network.request(bootstrap, protocol.PRODUCE, request, 10_000).topics[0].partitions[0]
    finally:
        network.close()
        context.term()


def produce_raw(bootstrap: str, topic: str, batch: bytes) -> int:
    """Send one batch as it is; its base offset."""
    answer = produce_answer(bootstrap, topic, batch)
    assert answer.error_code == 0, answer
    return answer.base_offset


def produce_error(bootstrap: str, topic: str, batch: bytes) -> int:
    """Send one batch as it is; the error code the broker answers."""
    return produce_answer(bootstrap, topic, batch).error_code


def produce_good(bootstrap: str, topic: str, first: int, count: int) -> None:
    with Producer(bootstrap, acks="all", linger_ms=1, batch_size=2_000) as producer:
        futures = [producer.send(topic, b"%d" % number, partition=0) for number in range(first, first + count)]
        producer.flush()
    assert [future.result(10).offset for future in futures] == list(range(first, first + count))


def write_partition(bootstrap: str, topic: str, bad_batch: bytes) -> None:
    """GOOD_BEFORE good records, the bad batch at BAD_OFFSET, GOOD_AFTER good records."""
    produce_good(bootstrap, topic, 0, GOOD_BEFORE)
    assert produce_raw(bootstrap, topic, bad_batch) == BAD_OFFSET
    produce_good(bootstrap, topic, AFTER_BAD, GOOD_AFTER)


def assert_stuck_at(consumer: Consumer, tp: TopicPartition, offset: int, polls: int = 5) -> None:
    """Every poll raises CorruptRecordError for ``offset``; the position does not move past it."""
    for _ in range(polls):
        with pytest.raises(CorruptRecordError) as raised:
            consumer.poll(0.1)
        assert (raised.value.topic, raised.value.partition, raised.value.offset) == (tp.topic, tp.partition, offset)
        assert f"{tp.topic}-{tp.partition}" in str(raised.value) and str(offset) in str(raised.value)
    assert consumer.position(tp) == offset


def read_rest(consumer: Consumer, expected: int) -> list:
    records: list = []
    for _ in range(300):
        records += consumer.poll(0.1)
        if len(records) >= expected:
            break
    return records


def test_the_broker_refuses_a_payload_that_does_not_hold_its_records(admin, shared_broker, topic_name):
    """A right CRC over garbage, or a record count the payload does not hold, is refused at produce:
    nothing is stored, and no offsets are used up (a count of 2**31-1 would take that many)."""
    admin.create_topic(topic_name, partitions=1)
    produce_good(shared_broker.bootstrap, topic_name, 0, GOOD_BEFORE)
    one_record = encode_batch([b"v"])
    inflated = bytearray(one_record)
    struct.pack_into(">i", inflated, LAST_OFFSET_DELTA_AT, 2**31 - 2)
    struct.pack_into(">i", inflated, RECORD_COUNT_AT, 2**31 - 1)
    for bad in (garbage_batch(), with_payload(bytes(inflated), one_record[HEADER_SIZE:])):
        assert produce_error(shared_broker.bootstrap, topic_name, bad) == CorruptRecordError.code
    tp = TopicPartition(topic_name, 0)
    with Consumer(shared_broker.bootstrap, auto_offset_reset="earliest") as consumer:
        assert consumer.end_offsets([tp]) == {tp: GOOD_BEFORE}, "nothing of the bad batches was stored"


def test_garbage_payload_with_a_right_crc(broker, topic_name):
    with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic_name, partitions=1)
    write_partition_with_garbage_on_disk(broker, topic_name)
    tp = TopicPartition(topic_name, 0)
    with Consumer(broker.bootstrap, group_id=topic_name, topics=[topic_name], auto_offset_reset="earliest",
                  auto_commit_interval_ms=50, max_poll_records=30, heartbeat_interval_ms=200) as consumer:
        records, error = poll_until_error(consumer, CorruptRecordError)
        assert [record.offset for record in records] == list(range(GOOD_BEFORE))
        assert [record.value for record in records] == [b"%d" % n for n in range(GOOD_BEFORE)]
        assert (error.topic, error.partition, error.offset) == (topic_name, 0, BAD_OFFSET)
        assert_stuck_at(consumer, tp, BAD_OFFSET)

        def auto_committed() -> bool:  # polls (which raise) run the auto-commit
            with pytest.raises(CorruptRecordError):
                consumer.poll(0.05)
            committed = consumer.committed([tp])[tp]
            assert committed is None or committed <= BAD_OFFSET, f"auto-commit passed the bad batch: {committed}"
            return committed == BAD_OFFSET

        wait_until(auto_committed, 30, "the auto-commit of the position before the bad batch")
        consumer.commit()
        assert consumer.committed([tp]) == {tp: BAD_OFFSET}, "a commit by hand does not pass it either"
        consumer.seek(tp, AFTER_BAD)
        rest = read_rest(consumer, GOOD_AFTER)
        assert [record.offset for record in rest] == list(range(AFTER_BAD, END))
        assert [record.value for record in rest] == [b"%d" % n for n in range(AFTER_BAD, END)]
        consumer.commit()
        assert consumer.committed([tp]) == {tp: END}


def test_pausing_the_bad_partition_lets_the_others_be_read(broker, topic_name):
    with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic_name, partitions=2)
    with Producer(broker.bootstrap) as producer:
        for number in range(20):
            producer.send(topic_name, b"other-%d" % number, partition=1)
    write_partition_with_garbage_on_disk(broker, topic_name)
    bad, other = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    with Consumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([bad, other])
        records, error = poll_until_error(consumer, CorruptRecordError)
        assert [r.offset for r in records if r.partition == 0] == list(range(GOOD_BEFORE))
        assert error.offset == BAD_OFFSET
        consumer.pause([bad])  # the way to read the other partitions on without skipping the bad batch
        records += read_rest(consumer, 20 - sum(1 for r in records if r.partition == 1))
        assert [r.offset for r in records if r.partition == 1] == list(range(20))
        consumer.resume([bad])
        assert_stuck_at(consumer, bad, BAD_OFFSET)


def test_crc_mismatch_in_the_log(broker, topic_name):
    with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic_name, partitions=1)
    write_partition(broker.bootstrap, topic_name, encode_batch([b"good-%d" % n for n in range(BAD_RECORDS)],
                                                               timestamps=[int(time.time() * 1000)] * BAD_RECORDS))
    broker.stop()  # a clean shutdown: on start the broker trusts its segments, so the flipped byte stays
    flip_payload_byte(broker.partition_dir(topic_name, 0), BAD_OFFSET)
    broker.start()
    tp = TopicPartition(topic_name, 0)
    with Consumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        assert consumer.end_offsets([tp]) == {tp: END}, "the broker kept every batch"
        records, error = poll_until_error(consumer, CorruptRecordError)
        assert [record.offset for record in records] == list(range(GOOD_BEFORE))
        assert (error.offset, "CRC" in str(error)) == (BAD_OFFSET, True)
        assert_stuck_at(consumer, tp, BAD_OFFSET)
        consumer.seek(tp, BAD_OFFSET + 1)  # Kafka's advice, "seek past the record": one record on
        assert_stuck_at(consumer, tp, BAD_OFFSET + 1, polls=2)
        consumer.seek(tp, AFTER_BAD)
        assert [record.offset for record in read_rest(consumer, GOOD_AFTER)] == list(range(AFTER_BAD, END))


def flip_payload_byte(partition_dir, base_offset: int) -> None:
    """Invert one payload byte of the batch at ``base_offset`` in the partition's segment files."""

    def flip(batch: bytes) -> bytes:
        flipped = bytearray(batch)
        flipped[HEADER_SIZE + 2] ^= 0xFF
        return bytes(flipped)

    rewrite_batch(partition_dir, base_offset, flip)


def rewrite_batch(partition_dir, base_offset: int, change) -> None:
    """Replace the batch at ``base_offset`` in the partition's segment files by ``change(batch)``, as long."""
    for segment in sorted(partition_dir.glob("*.log")):
        data = bytearray(segment.read_bytes())
        position = 0
        while position < len(data):
            header = read_header(data, position)
            if header.base_offset == base_offset:
                data[position:position + header.size] = change(bytes(data[position:position + header.size]))
                segment.write_bytes(bytes(data))
                return
            position += header.size
    raise AssertionError(f"no batch at offset {base_offset} in {partition_dir}")


def forged_batch(payload: bytes, records: int = 1, codec: int = 0) -> bytes:
    """A batch of ``records`` records around any payload, its length, codec and CRC made to fit."""
    header = bytearray(encode_batch([b"v"] * records)[:HEADER_SIZE])
    struct.pack_into(">i", header, 8, HEADER_SIZE - 12 + len(payload))  # batch_length: bytes after itself
    struct.pack_into(">h", header, 21, codec)  # attributes
    return with_payload(bytes(header) + payload, payload)


@st.composite
def damaged_payloads(draw) -> tuple[bytes, int]:
    """A real payload (keys, nulls, headers) with some bytes overwritten and maybe cut short, or random bytes."""
    values = draw(st.lists(st.one_of(st.none(), st.binary(max_size=6)), min_size=1, max_size=8))
    count = len(values)
    if draw(st.booleans()):
        return draw(st.binary(max_size=300)), count
    keys = draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.binary(max_size=4)), min_size=count,
                                              max_size=count)))
    headers = draw(st.one_of(st.none(), st.lists(st.dictionaries(st.text(max_size=3), st.binary(max_size=3),
                                                                 max_size=2), min_size=count, max_size=count)))
    payload = bytearray(encode_payload(values, keys, [0] * count, headers))
    for _ in range(draw(st.integers(0, 4))):
        payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
    return bytes(payload[:draw(st.integers(0, len(payload)))]), count


@given(damaged=damaged_payloads(), lz4=st.booleans())
def test_a_payload_the_broker_accepts_decodes(damaged, lz4):
    """check_payload (the broker's, at produce) passes only payloads that decode to their record count;
    only a header name that is not UTF-8 is left for the consumer to find."""
    payload, records = damaged
    batch = forged_batch(payload, records, 3 if lz4 else 0)
    header = check_batch(batch)
    try:
        check_payload(header, memoryview(batch)[HEADER_SIZE:])
    except CorruptRecordError:
        return
    try:
        assert len(decode_batch(batch, "t", 0)) == records
    except CorruptRecordError as error:
        assert "UTF-8" in str(error), error


@given(damaged=damaged_payloads(), lz4=st.booleans())
def test_any_payload_with_a_right_crc_decodes_or_raises_corrupt_record_error(damaged, lz4):
    """What the consumer relies on: decoding bytes that pass the CRC raises nothing but CorruptRecordError."""
    payload, records = damaged
    try:
        decoded = decode_batch(forged_batch(payload, records, 3 if lz4 else 0), "t", 0)
    except CorruptRecordError:
        return
    assert len(decoded) == records


@pytest.mark.parametrize("name_length, name", [(-1, b""), (2, b"\xff\xfe")], ids=["null-name", "not-utf8"])
def test_a_bad_header_name_is_a_corrupt_batch(name_length, name):
    flags_headers = 2
    payload = struct.pack("<Biq", flags_headers, 1, 0) + b"v" + struct.pack("<iii", 1, name_length, 0) + name
    with pytest.raises(CorruptRecordError, match="header"):
        decode_batch(forged_batch(payload), "t", 0)
