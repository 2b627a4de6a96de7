"""Serializers and deserializers: how Producer and Consumer turn application objects into bytes and back.

Two shapes are accepted wherever a ``key_serializer``, ``value_serializer``,
``key_deserializer`` or ``value_deserializer`` is taken:

- a plain callable of one argument, as in kafka-python:
  ``value_serializer=lambda v: json.dumps(v).encode()``;
- an instance of :class:`Serializer` / :class:`Deserializer`, whose
  ``serialize(topic, data, headers)`` / ``deserialize(topic, data, headers)``
  also sees the record's topic and headers, and (serializers) may add headers,
  e.g. the schema id a JSON-schema serializer stamps.

Ready ones: :class:`JsonSerializer` / :class:`JsonDeserializer` for plain
JSON values (dicts, lists...), :class:`MsgspecSerializer` /
:class:`MsgspecDeserializer` for typed msgspec Structs; all encode JSON with
msgspec.json, several times faster than the json module.

A None key or value (no key; a tombstone) is never passed to either: it stays
None both ways, as with Kafka's own serializers. A serializer's failure
surfaces from ``send`` as SerializationError (nothing is sent); a
deserializer's from ``poll`` as DeserializationError at the record's offset
(client/errors.py), raised on every poll until the application seeks past it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from rill.client.arguments import BYTES_LIKE
from rill.client.errors import DeserializationError, InvalidConfigError, SerializationError
from rill.client.types import Record


class Serializer:
    """Turns an object into bytes (or None) for one record; may add to ``headers`` (a mutable dict)."""

    def serialize(self, topic: str, data: Any, headers: dict[str, bytes]) -> bytes | None:
        raise NotImplementedError

    def __call__(self, data: Any) -> bytes | None:
        """kafka-python's one-argument form: no topic, and headers it adds are dropped."""
        return self.serialize("", data, {})


class Deserializer:
    """Turns a record's bytes (or None) back into an object; ``headers`` are the record's (read only)."""

    def deserialize(self, topic: str, data: bytes | None, headers: dict[str, bytes]) -> Any:
        raise NotImplementedError

    def __call__(self, data: bytes | None) -> Any:
        return self.deserialize("", data, {})


SerializerLike = Serializer | Callable[[Any], bytes | None]
DeserializerLike = Deserializer | Callable[[bytes | None], Any]
Deserialize = Callable[[str, bytes, Mapping[str, bytes]], Any]  # (topic, data, headers) -> object
CAUSE_CHARS_MAX = 500  # of the cause's message quoted in an error's: a cause may quote a whole record


def check_serializer(name: str, value: object) -> None:
    """A producer's setting: InvalidConfigError unless ``value`` is None, a Serializer, or a callable
    (a Deserializer is callable too, but the wrong way round)."""
    _check_callable(name, value, Deserializer)


def check_deserializer(name: str, value: object) -> None:
    """A consumer's setting: InvalidConfigError unless ``value`` is None, a Deserializer, or a callable."""
    _check_callable(name, value, Serializer)


def _check_callable(name: str, value: object, wrong_way: type) -> None:
    if value is not None and not callable(value):
        raise InvalidConfigError(f"{name} must be a callable or None, got {type(value).__name__}")
    if isinstance(value, wrong_way):
        raise InvalidConfigError(f"{name} must not be a {wrong_way.__name__}, got a {type(value).__name__}")


# ---- ready-made: JSON and msgspec Structs ---------------------------------------------------


class JsonSerializer(Serializer):
    """Any JSON-able value (dict, list, str, int, float, bool; also datetime, UUID, dataclasses and msgspec
    Structs) as compact UTF-8 JSON. Thread-safe: one instance may serve a Producer shared by threads."""

    def __init__(self) -> None:
        self._encode = msgspec.json.Encoder().encode

    def serialize(self, topic: str, data: Any, headers: dict[str, bytes]) -> bytes:
        return self._encode(data)


class JsonDeserializer(Deserializer):
    """JSON bytes back to plain Python values: objects become dicts, arrays lists."""

    def __init__(self) -> None:
        self._decode = msgspec.json.Decoder().decode

    def deserialize(self, topic: str, data: bytes, headers: Mapping[str, bytes]) -> Any:
        return self._decode(data)


class MsgspecSerializer(Serializer):
    """msgspec Structs (or any type msgspec knows) as JSON.

    With ``type`` each value is first checked against it with ``msgspec.convert``: an instance of the
    Struct passes as it is (msgspec does not check the fields of a Struct built in Python), and a dict
    with the Struct's fields is checked field by field and converted, so ``send(topic, {"order_id": 7})``
    fails at the call when ``order_id`` must be a str. Without ``type`` values are encoded unchecked.
    """

    def __init__(self, type: Any = None) -> None:
        if type is not None:
            _check_msgspec_type("MsgspecSerializer", type)
        self._type = type
        self._encode = msgspec.json.Encoder().encode

    def serialize(self, topic: str, data: Any, headers: dict[str, bytes]) -> bytes:
        if self._type is not None:
            data = msgspec.convert(data, self._type)
        return self._encode(data)


class MsgspecDeserializer(Deserializer):
    """JSON bytes to an instance of ``type`` (a msgspec Struct, say), every field checked as it is decoded:
    a record that does not match raises (a DeserializationError from ``poll``)."""

    def __init__(self, type: Any) -> None:
        self._decode = _check_msgspec_type("MsgspecDeserializer", type).decode

    def deserialize(self, topic: str, data: bytes, headers: Mapping[str, bytes]) -> Any:
        return self._decode(data)


def _check_msgspec_type(owner: str, type: Any) -> msgspec.json.Decoder:
    """A JSON decoder for ``type``; InvalidConfigError if msgspec does not support the type."""
    try:
        return msgspec.json.Decoder(type)
    except TypeError as error:
        raise InvalidConfigError(f"{owner}: msgspec cannot decode {type!r:.80}: {error}") from None


# ---- what Producer and Consumer call --------------------------------------------------------


def serialize_field(field: str, serializer: SerializerLike, topic: str, data: Any,
                    headers: dict[str, bytes]) -> bytes | None:
    """The record's key or value (``field``) as bytes; None stays None.

    A Serializer sees ``headers`` and may add to them. Whatever the serializer raises, or a result that is
    not bytes (bytearray and memoryview are copied) or None, becomes a SerializationError naming the
    field, the topic and the cause (the original is its ``__cause__``).
    """
    if data is None:
        return None
    try:
        if isinstance(serializer, Serializer):
            result = serializer.serialize(topic, data, headers)
        else:
            result = serializer(data)
    except Exception as error:
        raise SerializationError(f"cannot serialize the {field} of a record for topic {topic!r}: "
                                 f"{type(error).__name__}: {str(error):.{CAUSE_CHARS_MAX}}") from error
    if result.__class__ is bytes or result is None:
        return result
    if isinstance(result, BYTES_LIKE):
        return bytes(result)
    raise SerializationError(f"the {field} serializer returned {type(result).__name__} for topic {topic!r}, "
                             "not bytes or None")


def deserializing(deserializer: DeserializerLike | None) -> Deserialize | None:
    """The deserializer as one function of (topic, data, headers), chosen once, for the fetcher's loop."""
    if deserializer is None:
        return None
    if isinstance(deserializer, Deserializer):
        return deserializer.deserialize
    return lambda topic, data, headers: deserializer(data)


def deserialize_records(records: list[Record], key: Deserialize | None,
                        value: Deserialize | None) -> tuple[list[Record], DeserializationError | None]:
    """Deserialize the keys and values of ``records`` in place, in offset order.

    At the first record that fails: the records before it, and a DeserializationError at its offset
    (its ``__cause__`` what the deserializer raised); else all of them and None.
    """
    for index, record in enumerate(records):
        field = "key"
        try:
            if key is not None and record.key is not None:
                record.key = key(record.topic, record.key, record.headers)
            field = "value"
            if value is not None and record.value is not None:
                record.value = value(record.topic, record.value, record.headers)
        except Exception as error:
            failure = DeserializationError(
                f"{record.topic}-{record.partition}: cannot deserialize the {field} of the record at offset "
                f"{record.offset} ({type(error).__name__}: {str(error):.{CAUSE_CHARS_MAX}}); seek past it to read on",
                record.topic, record.partition, record.offset)
            failure.__cause__ = error
            return records[:index], failure
    return records, None
