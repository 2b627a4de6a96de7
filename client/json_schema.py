"""JSON values checked against the schema registry: a serializer for producers and a deserializer for consumers.

``JsonSchemaSerializer(bootstrap_or_admin, subject)`` encodes a value as
JSON, validates it against the subject's latest version (fastjsonschema)
and stamps the record's ``schema.id`` header with that version's global id,
in ASCII decimal. A value that fails raises SerializationError at
``Producer.send`` with the validator's message, and nothing is sent. The
latest version is fetched when the serializer is built, and again when a
value fails (at most every ``refresh_interval_ms``, default 1 s), so a
newer version registered since is picked up without a restart.

``JsonSchemaDeserializer(bootstrap_or_admin)`` reads a record's
``schema.id``, fetches that schema (cached by id: ids never change
meaning), decodes the JSON and, unless ``validate=False``, validates it.
A missing or unknown id, bad JSON or a failing value raise
DeserializationError, which the consumer reports at the record's offset; a
registry that does not answer raises its own (retriable) error.

Both are thread-safe. Given a bootstrap string they own an Admin, which
``close()`` closes; given an Admin they share it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from rill.client.admin import Admin
from rill.client.arguments import config_int
from rill.client.errors import DeserializationError, RillError, SchemaNotFoundError, SerializationError
from rill.client.schema_registry import SCHEMA_ID_HEADER, CachedSchema, SchemaCache, validation_message
from rill.client.serialization import Deserializer, Serializer

MAX_ID_DIGITS = 19


class JsonSchemaSerializer(Serializer):
    """JSON values validated against a subject's latest schema, each record stamped with its ``schema.id``.

    Raises SchemaNotFoundError at construction if the subject has no version. ``refresh_interval_ms``:
    a value that fails refetches the subject's latest version at most this often.
    """

    def __init__(self, bootstrap_or_admin: str | Admin, subject: str, refresh_interval_ms: int = 1_000):
        if not isinstance(subject, str):
            raise TypeError(f"subject must be a str, got {type(subject).__name__}")
        self._refresh_interval_s = config_int("refresh_interval_ms", refresh_interval_ms, 0) / 1000
        self.subject = subject
        self._cache = SchemaCache(bootstrap_or_admin)
        self._lock = threading.Lock()
        try:
            self._schema = self._cache.latest(subject)
        except BaseException:
            self._cache.close()
            raise
        self._fetched_at = time.monotonic()

    @property
    def schema_id(self) -> int:
        """The id stamped on records: the subject's latest version when last fetched."""
        return self._schema.version.id

    def serialize(self, topic: str, data: Any, headers: dict[str, bytes]) -> bytes | None:
        """The value as JSON bytes (None stays None, a tombstone); SerializationError if it is not JSON or
        fails the schema. Sets ``headers["schema.id"]``."""
        schema = self._valid_schema(data) if data is not None else self._schema
        headers[SCHEMA_ID_HEADER] = b"%d" % schema.version.id
        if data is None:
            return None
        try:
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as error:
            raise SerializationError(f"the value is not JSON: {error}"[:1000]) from None

    def _valid_schema(self, data: Any) -> CachedSchema:
        """The schema the value passes: the cached latest, else a newer latest; SerializationError if neither."""
        schema = self._schema
        problem = _problem(schema, data)
        if problem is None:
            return schema
        fresh = self._refresh()
        if fresh is not None and fresh.version.id != schema.version.id:
            problem = _problem(fresh, data)
            if problem is None:
                return fresh
            schema = fresh
        raise SerializationError(f"the value does not match schema id {schema.version.id} (subject "
                                 f"{self.subject!r}, version {schema.version.version}): {problem}")

    def _refresh(self) -> CachedSchema | None:
        """The subject's latest version, fetched again unless it was fetched within the refresh interval."""
        with self._lock:
            if time.monotonic() - self._fetched_at < self._refresh_interval_s:
                return None
            self._fetched_at = time.monotonic()
        try:
            fresh = self._cache.latest(self.subject)
        except RillError:
            return None  # the registry is unreachable: the cached version stands
        self._schema = fresh
        return fresh

    def close(self) -> None:
        """Close the Admin this serializer made (not one it was given)."""
        self._cache.close()


class JsonSchemaDeserializer(Deserializer):
    """JSON values read with the schema whose id their record's ``schema.id`` header names."""

    def __init__(self, bootstrap_or_admin: str | Admin, validate: bool = True):
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be True or False, got {type(validate).__name__}")
        self.validate = validate
        self._cache = SchemaCache(bootstrap_or_admin)

    def deserialize(self, topic: str, data: bytes | None, headers: dict[str, bytes]) -> Any:
        """The decoded value (None for a tombstone); DeserializationError if the header is missing or names
        an unknown id, or the value is not JSON or fails its schema."""
        schema = self._schema_of(headers.get(SCHEMA_ID_HEADER))
        if data is None:
            return None
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as error:
            raise DeserializationError(f"the value is not JSON: {error}"[:1000]) from None
        if self.validate:
            problem = _problem(schema, value)
            if problem is not None:
                raise DeserializationError(f"the value does not match schema id {schema.version.id}: {problem}")
        return value

    def _schema_of(self, header: bytes | None) -> CachedSchema:
        if header is None:
            raise DeserializationError(f"the record has no {SCHEMA_ID_HEADER} header")
        if not header.isdigit() or len(header) > MAX_ID_DIGITS:
            raise DeserializationError(f"the record's {SCHEMA_ID_HEADER} header {header[:40]!r} is not a schema id")
        try:
            return self._cache.by_id(int(header))
        except SchemaNotFoundError:
            raise DeserializationError(f"unknown schema id {int(header)}: the registry does not hold it") from None

    def close(self) -> None:
        """Close the Admin this deserializer made (not one it was given)."""
        self._cache.close()


def _problem(schema: CachedSchema, value: Any) -> str | None:
    """Why the value fails the schema, or None if it passes."""
    try:
        schema.validate(value)
    except Exception as error:  # fastjsonschema's JsonSchemaValueException, or a value it cannot handle
        return validation_message(error)
    return None
