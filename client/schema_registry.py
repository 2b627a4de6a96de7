"""The schema registry as clients see it: its value types, the rules of a schema's text, and a cache.

Brokers and clients share the rules here, so both judge a schema the same
way: ``parse_schema`` (JSON text to a schema, bounded in depth),
``canonical_text`` (how a schema is stored and compared: keys sorted, no
spaces) and ``compile_schema`` (fastjsonschema, which never fetches a
remote ``$ref``). ``SchemaCache`` is what serializers use: it fetches
schemas through an Admin (by id, or a subject's latest version) and keeps
their compiled validators, a bounded number of them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

import fastjsonschema
import msgspec
from rill.client.errors import InvalidSchemaError

if TYPE_CHECKING:
    from rill.client.admin import Admin

SCHEMA_ID_HEADER = "schema.id"  # a record's schema id, ASCII decimal
MAX_SUBJECT_LENGTH = 255
MAX_SCHEMA_DEPTH = 64  # nesting of JSON objects and arrays in a schema
MAX_SCHEMA_TEXT_CHARS = 1024 * 1024  # JSON text as sent, before canonical form (which the registry bounds)
CACHED_SCHEMAS_MAX = 1_000

Validator = Callable[[Any], Any]


class SchemaVersion(msgspec.Struct, frozen=True):
    """One version of a subject: its number and global schema id; ``schema`` when fetched (a dict)."""

    subject: str
    version: int
    id: int
    schema: dict | None = None


class CompatibilityReport(msgspec.Struct, frozen=True):
    """Whether a schema may follow a subject's latest version, and per problem its JSON path and what breaks.

    ``mode`` is the compatibility checked; ``version`` the version checked against (None: the subject has none).
    """

    compatible: bool
    messages: list[str]
    mode: str = "BACKWARD"
    version: int | None = None


# ---- the rules of a schema's text (brokers use them too) -----------------------------


def subject_problem(subject: str) -> str | None:
    """What is wrong with a subject name (1-255 characters, no control characters), or None."""
    if not 1 <= len(subject) <= MAX_SUBJECT_LENGTH:
        return f"a subject name has 1 to {MAX_SUBJECT_LENGTH} characters, got {len(subject)}"
    if any(character < " " or "\x7f" <= character <= "\x9f" for character in subject):
        return f"subject {subject!r:.80} has a control character"
    return None


def _refuse_remote(uri: str) -> Any:
    raise InvalidSchemaError(f"remote references are not supported: $ref {uri!r:.200} (keep definitions inside "
                             "the schema and refer to them as #/...)")


# fastjsonschema fetches a $ref it cannot resolve inside the schema through these (or urllib's urlopen for
# schemes without one): every scheme urllib knows is refused, so compiling never reads a file or the network.
_NO_REMOTE_REFERENCES = {scheme: _refuse_remote for scheme in ("http", "https", "ftp", "file", "data")}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text:.40} is out of range")
    return value


def parse_schema(text: str) -> dict:
    """A schema from JSON text: a JSON object of limited depth; InvalidSchemaError otherwise."""
    if len(text) > MAX_SCHEMA_TEXT_CHARS:
        raise InvalidSchemaError(f"schema text of {len(text)} characters is over {MAX_SCHEMA_TEXT_CHARS}")
    try:
        schema = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        raise InvalidSchemaError(f"the schema is not valid JSON: {error}") from None
    check_schema_shape(schema)
    return schema


def check_schema_shape(schema: Any) -> None:
    """InvalidSchemaError unless ``schema`` is a JSON object nested at most MAX_SCHEMA_DEPTH deep."""
    if not isinstance(schema, dict):
        raise InvalidSchemaError(f"a schema is a JSON object, got {type(schema).__name__}")
    stack = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidSchemaError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def canonical_text(schema: Any) -> str:
    """The stored form of a schema: JSON with sorted keys and no spaces; InvalidSchemaError if not JSON."""
    if not isinstance(schema, Mapping):
        raise InvalidSchemaError(f"a schema is a dict (a JSON object), got {type(schema).__name__}")
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode()  # a lone surrogate is not JSON text
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidSchemaError(f"the schema is not JSON: {error}"[:1000]) from None
    return text


def compile_schema(schema: dict) -> Validator:
    """A validator for the schema (fastjsonschema; defaults are not filled in, so validating never changes
    the data); InvalidSchemaError if fastjsonschema cannot compile it or it refers outside itself."""
    try:
        return fastjsonschema.compile(schema, handlers=_NO_REMOTE_REFERENCES, use_default=False)
    except InvalidSchemaError:
        raise
    except Exception as error:  # fastjsonschema raises many kinds: definition errors, re.error, SyntaxError...
        raise InvalidSchemaError(f"not a valid JSON Schema: {type(error).__name__}: {error}"[:1000]) from None


def validation_message(error: Exception) -> str:
    """fastjsonschema's message for a value that fails its schema (it names the path, e.g. data.amount)."""
    return str(getattr(error, "message", error))[:1000]


# ---- the client-side cache ------------------------------------------------------------


class CachedSchema(msgspec.Struct, frozen=True):
    version: SchemaVersion
    validate: Validator


class SchemaCache:
    """Schemas fetched from the registry with their compiled validators; thread-safe, bounded (least
    recently used go first).

    ``admin`` is an Admin, or a bootstrap string for one this cache owns (closed by ``close``).
    """

    def __init__(self, admin: Admin | str, max_schemas: int = CACHED_SCHEMAS_MAX):
        from rill.client.admin import Admin  # the Admin imports this module's types

        if isinstance(admin, str):
            self.admin = Admin(admin)
            self._owns_admin = True
        elif isinstance(admin, Admin):
            self.admin = admin
            self._owns_admin = False
        else:
            raise TypeError(f"expected a bootstrap string or an Admin, got {type(admin).__name__}")
        self._by_id: OrderedDict[int, CachedSchema] = OrderedDict()
        self._max_schemas = max_schemas
        self._lock = threading.Lock()

    def by_id(self, schema_id: int) -> CachedSchema:
        """The schema with that id (from the cache, else the registry); SchemaNotFoundError if unknown."""
        with self._lock:
            cached = self._by_id.get(schema_id)
            if cached is not None:
                self._by_id.move_to_end(schema_id)
                return cached
        return self._remember(self.admin.get_schema_by_id(schema_id))

    def latest(self, subject: str) -> CachedSchema:
        """The subject's latest version, always asked of the registry (its validator from the cache)."""
        version = self.admin.get_schema(subject)
        with self._lock:
            cached = self._by_id.get(version.id)
        return CachedSchema(version, cached.validate) if cached is not None else self._remember(version)

    def _remember(self, version: SchemaVersion) -> CachedSchema:
        cached = CachedSchema(version, compile_schema(version.schema))
        with self._lock:
            self._by_id[version.id] = cached
            while len(self._by_id) > self._max_schemas:
                self._by_id.popitem(last=False)
        return cached

    def close(self) -> None:
        if self._owns_admin:
            self.admin.close()
