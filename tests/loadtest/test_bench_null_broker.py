"""The null broker's answers (the client ceiling's sink), without a socket: metadata, acks, numbered fetches."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rill.client import protocol
from rill.client.batch import encode_batch, iter_batches
from rill.client.errors import UnsupportedVersionError

sys.path.insert(0, str(Path(__file__).parents[2] / "loadtest"))

from null_broker import Answers, batch_blob, encoded_response  # noqa: E402

BATCHES = [encode_batch([b"a", b"b", b"c"]), encode_batch([b"d", b"e"])]


def answers() -> Answers:
    return Answers(9999, {"t": 2}, batch_blob(BATCHES, 3 * len(BATCHES[0])))


def test_every_topic_asked_for_exists_with_its_partitions_led_by_the_null_broker():
    response = answers().answer(protocol.METADATA.key, protocol.MetadataRequest(["t", "other"]))
    assert [(topic.name, len(topic.partitions)) for topic in response.topics] == [("t", 2), ("other", 1)]
    assert response.brokers[0].port == 9999 and response.topics[0].partitions[1].leader == 0


def test_produce_is_acknowledged_with_counted_offsets_and_acks_0_gets_no_answer():
    sink = answers()
    request = protocol.ProduceRequest(1, 1000, [protocol.TopicProduceData("t", [
        protocol.PartitionProduceData(1, BATCHES[0])])])
    offsets = [sink.answer(protocol.PRODUCE.key, request).topics[0].partitions[0].base_offset for _ in range(2)]
    assert offsets == [0, 3]
    assert sink.answer(protocol.PRODUCE.key, protocol.ProduceRequest(0, 1000, request.topics)) is None


def _fetched_offsets(sink: Answers, offsets: list[int]) -> list[list[int]]:
    request = protocol.FetchRequest(0, 1, 1 << 20, [protocol.TopicFetch("t", [
        protocol.PartitionFetch(partition, offset, 1 << 20) for partition, offset in enumerate(offsets)])])
    envelope = protocol.decode_response_envelope(encoded_response(7, sink.answer(protocol.FETCH.key, request)))
    assert envelope.correlation_id == 7 and envelope.error_code == 0
    partitions = protocol.decode_response_body(protocol.FETCH.key, envelope.body).topics[0].partitions
    return [[header.base_offset for _, header in iter_batches(p.records)] for p in partitions]


def test_fetches_return_the_blob_numbered_from_each_fetch_offset():
    sink = answers()
    assert _fetched_offsets(sink, [10, 500]) == [[10, 13, 15], [500, 503, 505]]
    assert _fetched_offsets(sink, [16, 0]) == [[16, 19, 21], [0, 3, 5]]  # the same template, patched anew


def test_a_request_it_does_not_know_is_refused_with_a_typed_error():
    with pytest.raises(UnsupportedVersionError):
        answers().answer(protocol.DELETE_TOPIC.key, protocol.DeleteTopicRequest("t", 1000))


def test_the_blob_cycles_the_batches_up_to_the_limit_and_holds_at_least_one():
    three = BATCHES[0] + BATCHES[1] + BATCHES[0]
    assert batch_blob(BATCHES, len(three)) == three
    assert batch_blob(BATCHES, 1) == BATCHES[0]
