"""Serializers and deserializers: how Producer and Consumer turn application objects into bytes and back.

Two shapes are accepted wherever a ``key_serializer``, ``value_serializer``,
``key_deserializer`` or ``value_deserializer`` is taken:

- a plain callable of one argument, as in kafka-python:
  ``value_serializer=lambda v: json.dumps(v).encode()``;
- an instance of :class:`Serializer` / :class:`Deserializer`, whose
  ``serialize(topic, data, headers)`` / ``deserialize(topic, data, headers)``
  also sees the record's topic and headers, and (serializers) may add headers,
  e.g. the schema id a JSON-schema serializer stamps.

A serializer's failure surfaces from ``send`` as SerializationError (nothing is
sent); a deserializer's from ``poll`` as DeserializationError at the record's
offset (client/errors.py).
"""

from __future__ import annotations

from typing import Any, Callable

from rill.client.errors import InvalidConfigError


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


def check_serializer(name: str, value: object) -> None:
    """InvalidConfigError unless ``value`` is None, a Serializer/Deserializer, or a callable."""
    if value is not None and not callable(value):
        raise InvalidConfigError(f"{name} must be a callable or None, got {type(value).__name__}")
