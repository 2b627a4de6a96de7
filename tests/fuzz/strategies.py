"""Hypothesis strategies for the broker fuzz: request bodies of every API, record batches, whole messages.

Bodies are plain MessagePack values in struct field order (the wire structs
are array-like), not Structs, so that a field can hold a value of the wrong
type, a struct can lose or gain a field, and a string can carry bytes that
are not UTF-8 (pre-encoded, as msgspec.Raw). Most values have the right
type and lean towards the ones that reach deep into the broker: the stored
topic, small partition numbers, offsets near the log's, known config names
and assignors, batches that are valid or almost.

Isolation: a few valid requests would rightly change what was stored
before the fuzzing, so ``leaves_stored_data_alone`` keeps them out: a
DeleteTopic of the stored topic or an internal one, any group request on
the stored group, and a CreateTopic of any topic but FUZZ_TOPICS or of
more than 4 partitions (a valid 10,000-partition topic is a resource
test, not a protocol one). It checks whole decoded messages, because a
flipped byte can turn one request type into another and hypothesis also
draws strings it finds as constants in the source.
"""

from __future__ import annotations

import struct
import types
import typing
from typing import Callable

import msgspec
from crc32c import crc32c
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from rill.client import protocol
from rill.client.batch import CRC_START, HEADER, BatchHeader, encode_batch
from rill.client.topic_names import topic_name_problem
from rill.node.coordinator.assignors import ASSIGNORS
from rill.node.metadata.controller import MAX_PARTITIONS
from rill.node.metadata.topic_config import SETTINGS

from fuzz.target import STORED_GROUP, STORED_PARTITIONS, STORED_TOPIC

FUZZ_TOPICS = ("fuzz-made-a", "fuzz-made-b", "fuzz-made-c")
FUZZ_GROUPS = ("fuzz-group-a", "fuzz-group-b")
CREATED_PARTITIONS_MAX = 4
INT64_MIN = -(1 << 63)
UINT64_MAX = (1 << 64) - 1
WRONG_TYPE_ONE_IN = 50  # a field takes a value of any type once in this many draws
WRONG_SHAPE_ONE_IN = 30  # a struct loses its defaulted fields, or one more, or gains one
ANY_INT_ONE_IN = 4  # a "leaning" integer is any integer MessagePack carries once in this many draws

_encoder = msgspec.msgpack.Encoder()


def encode(value: object) -> bytes:
    return _encoder.encode(value)


def weighted(common: SearchStrategy, rare: SearchStrategy, one_in: int) -> SearchStrategy:
    """``rare`` about once in ``one_in`` draws, ``common`` otherwise (shrinking towards ``common``).

    Not ``one_of([common] * n + [rare])``: one_of drops repeated strategies, which makes it 50:50.
    """
    return st.integers(0, one_in - 1).flatmap(lambda draw: rare if draw == one_in - 1 else common)


# ---- values of any type -------------------------------------------------------------------


def msgpack_str(data: bytes) -> msgspec.Raw:
    """A MessagePack str whose bytes are ``data``, UTF-8 or not."""
    size = len(data)
    if size < 32:
        head = bytes((0xA0 | size,))
    elif size < 256:
        head = b"\xd9" + bytes((size,))
    else:
        head = b"\xda" + size.to_bytes(2, "big")
    return msgspec.Raw(head + data)


ANY_INT = st.integers(INT64_MIN, UINT64_MAX)  # every integer MessagePack carries
TEXT = st.text(max_size=24)
NOT_UTF8 = st.builds(lambda head, bad, tail: msgpack_str(head + bad + tail), st.binary(max_size=6),
                     st.sampled_from([b"\xff", b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]),
                     st.binary(max_size=6))
SCALARS = st.one_of(st.none(), st.booleans(), ANY_INT, st.floats(), TEXT, st.binary(max_size=32), NOT_UTF8,
                    st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=12)))
ANY_VALUE = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(TEXT | ANY_INT, inner, max_size=3), max_leaves=8)


def leaning(*likely: SearchStrategy) -> SearchStrategy:
    """Mostly the likely values, now and then any integer MessagePack carries."""
    return weighted(st.one_of(*likely), ANY_INT, ANY_INT_ONE_IN)


# ---- record batches ------------------------------------------------------------------------

_FIELD_FORMATS = HEADER.format.lstrip(">")
_FIELD_OFFSETS = {name: struct.calcsize(">" + _FIELD_FORMATS[:index]) for index, name in enumerate(BatchHeader._fields)}
_FORMAT_RANGES = {"q": (-(1 << 63), (1 << 63) - 1), "i": (-(1 << 31), (1 << 31) - 1), "h": (-(1 << 15), (1 << 15) - 1),
                  "b": (-128, 127), "I": (0, (1 << 32) - 1)}


@st.composite
def valid_batches(draw) -> bytes:
    """A batch as a producer builds it: 1-5 records, any keys, values, timestamps, headers, codec."""
    count = draw(st.integers(1, 5))
    column = st.lists(st.none() | st.binary(max_size=40), min_size=count, max_size=count)
    header_maps = st.none() | st.dictionaries(st.text(max_size=6), st.binary(max_size=8), max_size=2)
    return encode_batch(
        draw(column),
        draw(st.none() | column),
        draw(st.lists(st.integers(0, 1 << 42), min_size=count, max_size=count)),
        draw(st.none() | st.lists(header_maps, min_size=count, max_size=count)),
        compression=draw(st.sampled_from([0, 3])),
    )


def set_field(batch: bytearray, name: str, value: int) -> None:
    fmt = _FIELD_FORMATS[BatchHeader._fields.index(name)]
    struct.pack_into(">" + fmt, batch, _FIELD_OFFSETS[name], value)


def fix_crc(batch: bytearray) -> None:
    """Make the CRC right for whatever the batch holds now."""
    if len(batch) >= CRC_START:
        set_field(batch, "crc", crc32c(bytes(batch[CRC_START:])))


@st.composite
def _header_field_changed(draw, batch: bytearray) -> None:
    name = draw(st.sampled_from(BatchHeader._fields))
    low, high = _FORMAT_RANGES[_FIELD_FORMATS[BatchHeader._fields.index(name)]]
    small = st.integers(max(low, -2), 4)
    set_field(batch, name, draw(st.one_of(small, st.integers(low, high), st.just(low), st.just(high))))


@st.composite
def _garbage_payload(draw, batch: bytearray) -> None:
    del batch[HEADER.size:]
    batch += draw(st.binary(max_size=200))
    set_field(batch, "batch_length", len(batch) - 12)


@st.composite
def _absurd_record_count(draw, batch: bytearray) -> None:
    """Counts that agree with each other but not with the payload, or that no batch may have."""
    count = draw(st.one_of(st.integers(1 << 16, (1 << 31) - 1), st.integers(-(1 << 31) + 1, 0)))
    set_field(batch, "record_count", count)
    set_field(batch, "last_offset_delta", count - 1)


@st.composite
def _lz4_claiming_size(draw, batch: bytearray) -> None:
    """An LZ4 payload that claims some uncompressed size, then holds garbage."""
    del batch[HEADER.size:]
    batch += struct.pack("<I", draw(st.integers(0, (1 << 32) - 1))) + draw(st.binary(max_size=64))
    set_field(batch, "attributes", 3)
    set_field(batch, "batch_length", len(batch) - 12)


_DAMAGES: tuple[Callable[..., SearchStrategy], ...] = (
    _header_field_changed, _garbage_payload, _absurd_record_count, _lz4_claiming_size)


@st.composite
def damaged_batches(draw) -> bytes:
    """A valid batch with one damage; the CRC is made right again (the usual case) or left as it is."""
    batch = bytearray(draw(valid_batches()))
    damage = draw(st.sampled_from(_DAMAGES))
    draw(damage(batch))
    if draw(weighted(st.just(True), st.just(False), 4)):
        fix_crc(batch)
    cut = draw(st.none() | st.integers(0, len(batch)))
    return bytes(batch[:cut] if cut is not None else batch) + draw(weighted(st.just(b""), st.binary(max_size=16), 8))


RECORDS = st.one_of(
    valid_batches(),
    damaged_batches(),
    damaged_batches(),
    st.lists(st.one_of(valid_batches(), damaged_batches()), min_size=2, max_size=3).map(b"".join),
    st.binary(max_size=128),
)


# ---- names ------------------------------------------------------------------------------------

TOPICS = st.one_of(st.just(STORED_TOPIC), st.sampled_from(FUZZ_TOPICS), st.just(protocol.OFFSETS_TOPIC), TEXT)
GROUP_IDS = st.one_of(st.sampled_from(FUZZ_GROUPS), TEXT)
PARTITIONS = leaning(st.integers(-1, STORED_PARTITIONS + 1))
CREATABLE_TOPICS = st.one_of(st.sampled_from(FUZZ_TOPICS), st.just(STORED_TOPIC), st.just(protocol.OFFSETS_TOPIC), TEXT)
DELETABLE_TOPICS = st.one_of(st.sampled_from(FUZZ_TOPICS), TEXT)


def leaves_stored_data_alone(message: list[bytes]) -> bool:
    """False for a message that is a valid request which may rightly change the stored data."""
    if len(message) != 1:
        return True  # the broker refuses every message of more than one frame
    try:
        envelope = protocol.decode_request_envelope(message[0])
        body = protocol.decode_request_body(envelope.api_key, envelope.body)
    except Exception:  # noqa: BLE001 - not a valid request, so it changes nothing
        return True
    if isinstance(body, protocol.CreateTopicRequest):  # existing topics may be named: they stay as they are
        known = body.name in (*FUZZ_TOPICS, STORED_TOPIC, *protocol.INTERNAL_TOPICS)
        return (known and body.partitions <= CREATED_PARTITIONS_MAX) or not may_exist(body)
    if isinstance(body, protocol.DeleteTopicRequest):
        return body.name not in (STORED_TOPIC, *protocol.INTERNAL_TOPICS)
    return getattr(body, "group_id", None) != STORED_GROUP


def may_exist(request: protocol.CreateTopicRequest) -> bool:
    """Whether a topic could be created as asked (name and partition count pass the broker's checks)."""
    return topic_name_problem(request.name) is None and 1 <= request.partitions <= MAX_PARTITIONS


# ---- request bodies -----------------------------------------------------------------------

TOPIC_CONFIGS = st.dictionaries(
    st.one_of(st.sampled_from(sorted(SETTINGS)), TEXT),
    st.one_of(st.sampled_from(["0", "1", "-1", "14", "1048576", "compact", "delete", "compact,delete", "true", "0.5"]),
              TEXT),
    max_size=3,
)

# Values by (field name, field type), for every struct that has such a field.
_BY_FIELD: dict[tuple[str, object], SearchStrategy] = {
    ("topic", str): TOPICS,
    ("topic_id", str): st.one_of(st.just(""), TEXT),
    ("subscribed_topics", list[str]): st.lists(TOPICS, max_size=3),
    ("partition", int): PARTITIONS,
    ("partitions", list[int]): st.lists(PARTITIONS, max_size=3),
    ("fetch_offset", int): leaning(st.integers(-2, 200)),
    ("offset", int): leaning(st.integers(-2, 200)),
    ("timestamp", int): leaning(st.integers(-3, 2), st.just(1_700_000_000_005)),
    ("records", bytes): RECORDS,
    ("acks", int): leaning(st.sampled_from([-1, 0, 1])),
    ("timeout_ms", int): leaning(st.integers(0, 200)),
    ("max_wait_ms", int): leaning(st.integers(0, 100)),
    ("min_bytes", int): leaning(st.integers(0, 1 << 20)),
    ("max_bytes", int): leaning(st.integers(0, 1 << 20)),
    ("partition_max_bytes", int): leaning(st.integers(0, 1 << 20)),
    ("replica_id", int): weighted(st.just(-1), leaning(st.integers(-2, 3)), 3),  # >= 0: a broker-only fetch
    ("node_id", int): leaning(st.integers(-1, 3)),
    ("leader_epoch", int): leaning(st.integers(-1, 3)),
    ("current_leader_epoch", int): leaning(st.integers(-1, 3)),
    ("partition_epoch", int): leaning(st.integers(-1, 3)),
    ("member_epoch", int): leaning(st.integers(-2, 3)),
    ("isr", list[int]): st.lists(leaning(st.integers(-1, 3)), max_size=3),
    ("group_id", str): GROUP_IDS,
    ("member_id", str): st.one_of(st.just(""), TEXT),
    ("assignor", str): st.one_of(st.sampled_from(ASSIGNORS), TEXT),
    ("session_timeout_ms", int): leaning(st.integers(100, 3_600_000)),
    ("subscribed_pattern", str): st.one_of(st.sampled_from(["", ".*", "fuzz-.*", "(a+)+"]), TEXT),
    ("config", dict[str, str]): TOPIC_CONFIGS,
}

# Values for one field of one struct.
_BY_STRUCT_FIELD: dict[tuple[type, str], SearchStrategy] = {
    (protocol.CreateTopicRequest, "name"): CREATABLE_TOPICS,
    (protocol.DeleteTopicRequest, "name"): DELETABLE_TOPICS,
    (protocol.CreateTopicRequest, "partitions"): leaning(st.integers(-1, CREATED_PARTITIONS_MAX)),
    (protocol.CreateTopicRequest, "replication_factor"): st.one_of(st.just(1), leaning(st.integers(-1, 2))),
    (protocol.MetadataRequest, "topics"): st.none() | st.lists(TOPICS, max_size=3),
}
def typed(annotation: object) -> SearchStrategy:
    """Values of a field type, any of them; nested structs are bodies in their own right."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return leaning(st.integers(-2, 10))
    if annotation is str:
        return TEXT
    if annotation is bytes:
        return st.binary(max_size=64)
    if origin is list:
        return st.lists(field_values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(field_values(args[0]), field_values(args[1]), max_size=3)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([typed(arg) for arg in args])
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return bodies(annotation)
    raise TypeError(f"no strategy for field type {annotation!r}")


def field_values(annotation: object, likely: SearchStrategy | None = None) -> SearchStrategy:
    """Mostly values of the field's type (``likely`` ones if given), now and then a value of any type."""
    return weighted(likely if likely is not None else typed(annotation), ANY_VALUE, WRONG_TYPE_ONE_IN)


@st.composite
def bodies(draw, struct_type: type) -> list:
    """One struct as a MessagePack array: whole, without its defaulted fields, one short or one long."""
    fields = msgspec.structs.fields(struct_type)
    values = []
    for field in fields:
        likely = _BY_STRUCT_FIELD.get((struct_type, field.name), _BY_FIELD.get((field.name, field.type)))
        values.append(draw(field_values(field.type, likely)))
    required = sum(field.required for field in fields)
    shapes = [len(values), required, max(required - 1, 0), len(values) + 1]
    length = draw(weighted(st.just(shapes[0]), st.sampled_from(shapes[1:]), WRONG_SHAPE_ONE_IN))
    return (values + [draw(ANY_VALUE)])[:length]


# ---- whole messages ---------------------------------------------------------------------------

CLIENT_IDS = weighted(TEXT, st.one_of(NOT_UTF8, ANY_VALUE), 10)


@st.composite
def request_frames(draw, api: protocol.Api) -> bytes:
    """One request frame of ``api``: mostly a right envelope round a fuzzed body, now and then a wrong one."""
    body = draw(weighted(bodies(api.request), ANY_VALUE, WRONG_TYPE_ONE_IN))
    envelope = [
        draw(weighted(st.just(api.key), ANY_VALUE, WRONG_TYPE_ONE_IN)),
        draw(weighted(st.just(api.max_version), ANY_VALUE, WRONG_TYPE_ONE_IN)),
        draw(ANY_INT),
        draw(CLIENT_IDS),
        msgspec.Raw(encode(body)),
    ]
    length = draw(weighted(st.just(5), st.integers(0, 6), 10))
    return encode((envelope + [draw(ANY_VALUE)])[:length])


def any_request_frames() -> SearchStrategy:
    return st.sampled_from(list(protocol.APIS.values())).flatmap(request_frames)


@st.composite
def truncated_frames(draw) -> bytes:
    frame = draw(any_request_frames())
    return frame[:draw(st.integers(0, len(frame) - 1))]


@st.composite
def flipped_frames(draw) -> bytes:
    """A request frame with a few bytes XORed."""
    frame = bytearray(draw(any_request_frames()))
    for _ in range(draw(st.integers(1, 4))):
        frame[draw(st.integers(0, len(frame) - 1))] ^= draw(st.integers(1, 255))
    return bytes(frame)


MULTI_FRAME_MESSAGES = st.lists(st.one_of(any_request_frames(), st.binary(max_size=64)), min_size=2, max_size=4)


@st.composite
def produce_to_stored_partitions(draw) -> list[bytes]:
    """A well-formed produce request to a stored partition: only its batches are fuzzed."""
    request = protocol.ProduceRequest(draw(st.sampled_from([-1, 1, 0])), 5_000, [protocol.TopicProduceData(
        STORED_TOPIC, [protocol.PartitionProduceData(draw(st.integers(0, STORED_PARTITIONS - 1)), draw(RECORDS))])])
    return [protocol.encode_request(protocol.PRODUCE, draw(st.integers(0, 1 << 31)), request, client_id="fuzz")]
