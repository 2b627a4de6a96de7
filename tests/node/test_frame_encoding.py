"""Frames are encoded in one pass (the body straight after the envelope's other fields, no second copy of
it) yet are byte for byte what encoding the body, then the envelope around it as msgspec.Raw, gives: the
wire format is unchanged. And they decode back, from bytes or from a view of ZeroMQ's buffer."""

from __future__ import annotations

import msgspec
import pytest
from rill.client import protocol

_encoder = msgspec.msgpack.Encoder()
BATCH = bytes(range(256)) * 300

REQUESTS = [
    (protocol.PRODUCE, protocol.ProduceRequest(1, 30_000, [protocol.TopicProduceData(
        "orders", [protocol.PartitionProduceData(3, BATCH)])])),
    (protocol.METADATA, protocol.MetadataRequest(None)),
    (protocol.API_VERSIONS, protocol.ApiVersionsRequest()),
]
RESPONSES = [
    protocol.FetchResponse([protocol.TopicFetchResponse("orders", [
        protocol.PartitionFetchResponse(0, 0, "", 10, 0, BATCH),
        protocol.PartitionFetchResponse(1, 0, "", 10, 0, memoryview(BATCH)[:1000]),  # a log read cut to batches
    ])]),
    protocol.ProduceResponse([protocol.TopicProduceResponse("orders", [
        protocol.PartitionProduceResponse(0, 0, "", 5, 0)])]),
    None,
]


@pytest.mark.parametrize("api, body", REQUESTS, ids=lambda value: getattr(value, "name", ""))
@pytest.mark.parametrize("client_id", ["", "c" * 300])
def test_a_request_frame_is_the_envelope_around_the_encoded_body(api, body, client_id):
    frame = protocol.encode_request(api, 2**40, body, client_id)
    assert frame == _encoder.encode(protocol.RequestEnvelope(
        api.key, api.max_version, 2**40, client_id, msgspec.Raw(_encoder.encode(body))))
    envelope = protocol.decode_request_envelope(memoryview(frame))
    assert (envelope.api_key, envelope.correlation_id, envelope.client_id) == (api.key, 2**40, client_id)
    assert protocol.decode_request_body(api.key, envelope.body) == body


@pytest.mark.parametrize("body", RESPONSES, ids=["fetch", "produce", "none"])
def test_a_response_frame_is_the_envelope_around_the_encoded_body(body):
    frame = protocol.encode_response(7, body)
    raw = msgspec.Raw(b"\xc0" if body is None else _encoder.encode(body))
    assert frame == _encoder.encode(protocol.ResponseEnvelope(7, 0, "", raw))
    envelope = protocol.decode_response_envelope(memoryview(frame))
    if body is not None:
        decoded = protocol.decode_response_body(protocol.FETCH.key if isinstance(body, protocol.FetchResponse)
                                                else protocol.PRODUCE.key, envelope.body)
        assert _encoder.encode(decoded) == _encoder.encode(body)


def test_records_decoded_from_a_view_of_the_frame_are_their_own_bytes():
    """The client decodes from ZeroMQ's buffer, which is freed after: what it keeps must not refer to it."""
    frame = bytearray(protocol.encode_response(7, RESPONSES[0]))
    envelope = protocol.decode_response_envelope(memoryview(frame))
    decoded = protocol.decode_response_body(protocol.FETCH.key, envelope.body)
    frame[:] = b"\0" * len(frame)
    records = [answer.records for topic in decoded.topics for answer in topic.partitions]
    assert [type(value) for value in records] == [bytes, bytes]
    assert records == [BATCH, BATCH[:1000]]


def test_an_error_response_has_a_nil_body():
    frame = protocol.encode_response(-1, None, 42, "malformed request frame")
    envelope = protocol.decode_response_envelope(frame)
    assert (envelope.correlation_id, envelope.error_code, envelope.error_message, bytes(envelope.body)) == (
        -1, 42, "malformed request frame", b"\xc0")
