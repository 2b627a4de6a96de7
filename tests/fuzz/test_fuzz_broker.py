"""Fuzzing one real broker over the wire: every request type, malformed messages, damaged batches.

Each case must get an error answer or a valid one (or none where the
protocol says: acks=0 produce, a long poll, a frame over the size limit),
the broker must go on serving a fresh client, and everything stored
before the fuzzing must read back byte-identical (fuzz/target.py checks
every CHECK_EVERY cases and after each test). The hypothesis tests share
the case budget of fuzz/budget.py.
"""

from __future__ import annotations

from typing import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from rill.client import protocol
from rill.client.batch import decode_batch, iter_batches, read_header
from rill.client.errors import CorruptRecordError, error_for_code

from fuzz.budget import examples_each
from fuzz.strategies import (
    MULTI_FRAME_MESSAGES,
    flipped_frames,
    leaves_stored_data_alone,
    produce_to_stored_partitions,
    request_frames,
    truncated_frames,
)
from fuzz.target import MAX_REQUEST_BYTES, STORED_TOPIC, FuzzTarget
from fuzz.wire import Answer

MALFORMED: dict[str, SearchStrategy[list[bytes]]] = {
    "random-bytes": st.binary(max_size=512).map(lambda frame: [frame]),
    "truncated": truncated_frames().map(lambda frame: [frame]),
    "bytes-flipped": flipped_frames().map(lambda frame: [frame]),
    "multi-frame": MULTI_FRAME_MESSAGES,
}
EXAMPLES = examples_each(len(protocol.APIS) + len(MALFORMED) + 1)


def outcome(answer: Answer | None) -> str:
    """How a case was answered, for ``pytest --hypothesis-show-statistics``: shows how deep cases reach."""
    if answer is None:
        return "no answer (allowed)"
    if answer.error_code:
        return f"error {error_name(answer.error_code)}"
    inner = first_error_code(answer.body)
    return f"success, with {error_name(inner)} inside" if inner else "success"


def error_name(code: int) -> str:
    return type(error_for_code(code)).__name__


def first_error_code(value: object) -> int:
    """The first non-zero ``error_code`` in a response body (per topic, partition, ...), or 0."""
    if isinstance(value, list):
        return next((code for code in map(first_error_code, value) if code), 0)
    if isinstance(value, msgspec.Struct):
        own = getattr(value, "error_code", 0)
        return own or first_error_code([getattr(value, field) for field in value.__struct_fields__])
    return 0


def run_case(target: FuzzTarget, message: list[bytes]) -> Answer | None:
    assume(leaves_stored_data_alone(message))
    answer = target.run_case(message)
    event(outcome(answer))
    return answer


@pytest.fixture
def target(fuzz_target: FuzzTarget) -> Iterator[FuzzTarget]:
    """The module's broker, whose invariants are checked once more after each test."""
    yield fuzz_target
    fuzz_target.check_invariants()


# The function-scoped fixture ``target`` is meant to run once per test, not once per example.
fuzz_settings = settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("api", protocol.APIS.values(), ids=lambda api: api.name)
@fuzz_settings
@given(data=st.data())
def test_requests_of_every_type(target: FuzzTarget, api: protocol.Api, data: st.DataObject):
    run_case(target, [data.draw(request_frames(api), label="frame")])


@pytest.mark.parametrize("kind", MALFORMED)
@fuzz_settings
@given(data=st.data())
def test_malformed_messages(target: FuzzTarget, kind: str, data: st.DataObject):
    run_case(target, data.draw(MALFORMED[kind], label="message"))


def without_assigned_fields(buffer: bytes) -> bytes:
    """The batches with the fields a leader assigns (base offset, leader epoch) zeroed."""
    out = bytearray(buffer)
    position = 0
    while position < len(out):
        size = read_header(out, position).size
        out[position:position + 8] = bytes(8)
        out[position + 12:position + 16] = bytes(4)
        position += size
    return bytes(out)


@fuzz_settings
@given(message=produce_to_stored_partitions())
def test_damaged_batches_are_refused_or_read_back_verbatim(target: FuzzTarget, message: list[bytes]):
    """Batches with a right or wrong CRC over garbage, wrong lengths, absurd counts and offsets: what
    the broker accepts decodes into its record count (so a consumer can read it), and a consumer's fetch
    returns it byte for byte (but for the offset and epoch it assigns)."""
    answer = run_case(target, message)
    if answer is None or answer.error_code or answer.body.topics[0].partitions[0].error_code:
        return
    base_offset = answer.body.topics[0].partitions[0].base_offset
    sent = protocol.decode_request_body(protocol.PRODUCE.key, protocol.decode_request_envelope(message[0]).body)
    sent = sent.topics[0].partitions[0]
    for position, header in iter_batches(sent.records):
        try:
            decoded = decode_batch(sent.records, STORED_TOPIC, sent.partition, position)
        except CorruptRecordError as error:  # a header name cut inside a character: the consumer's to find
            assert "UTF-8" in str(error), error
            continue
        assert len(decoded) == header.record_count, "an accepted batch holds its record count"
    stored = target.read_partition(sent.partition, base_offset)[:len(sent.records)]
    assert without_assigned_fields(stored) == without_assigned_fields(sent.records), (
        f"{STORED_TOPIC}-{sent.partition} at offset {base_offset} holds other bytes than were accepted")


def test_frame_over_max_request_bytes_costs_the_connection_only(target: FuzzTarget):
    request = protocol.ProduceRequest(1, 5_000, [protocol.TopicProduceData(
        STORED_TOPIC, [protocol.PartitionProduceData(0, bytes(MAX_REQUEST_BYTES))])])
    target.run_case([protocol.encode_request(protocol.PRODUCE, 1, request)])
