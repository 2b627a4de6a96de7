"""JSON Schema compatibility: can data written with one schema be read with another?

Pure functions of two schemas (parsed JSON). ``problems(mode, old, new)``
lists what breaks, one message per problem, each starting with the JSON
path where it is, e.g. ``properties.currency: new required property (old
records lack it)``; an empty list means compatible. Modes are Confluent
Schema Registry's, checked against one previous schema (its latest
version; the transitive modes, against every version, are not built):

- BACKWARD (the default): readers using the new schema read data written
  with the old one;
- FORWARD: readers using the old schema read data written with the new one;
- FULL: both; NONE: no check.

Each direction is one question: does every record the *writer* schema
admits pass the *reader* schema? The answer follows Confluent's JSON
Schema rules in their lenient form (the robustness principle): writers
write the properties their schema declares, so an open content model
(``additionalProperties`` absent or true) may gain optional properties and
lose any property; a closed one (``additionalProperties: false``) may gain
optional properties but not lose any; a partially open one (a schema for
``additionalProperties``) must accept what it drops. A property that
becomes required breaks unless the reader's schema gives it a ``default``
(as in Confluent). Widening is compatible: more types (``integer`` is
within ``number``), more enum values, looser bounds; narrowing breaks.

Analyzed keywords: ``type``, ``enum``, ``const``, ``properties``,
``required``, ``additionalProperties``, ``items`` (one schema),
``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
``multipleOf``, ``minLength``, ``maxLength``, ``pattern``, ``format``,
``minItems``, ``maxItems``, ``uniqueItems``, ``minProperties``,
``maxProperties``. Other validation keywords (``anyOf``, ``oneOf``,
``allOf``, ``not``, ``$ref`` and definitions, ``patternProperties``, tuple
``items``, ...) are compared for equality: any change to them is reported
as breaking, since the check cannot prove it safe. Annotations (``title``,
``description``, ``default``, ``examples``, ...) and unknown keywords are
ignored, as validators ignore them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

BACKWARD = "BACKWARD"
FORWARD = "FORWARD"
FULL = "FULL"
NONE = "NONE"
MODES = (BACKWARD, FORWARD, FULL, NONE)
DEFAULT_MODE = BACKWARD
TRANSITIVE_MODES = ("BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE")

# Validation keywords this module does not analyze: a change to any of them counts as breaking.
UNANALYZED = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "definitions", "$defs",
              "patternProperties", "dependencies", "dependentRequired", "dependentSchemas", "propertyNames",
              "contains", "minContains", "maxContains", "additionalItems", "prefixItems", "unevaluatedItems",
              "unevaluatedProperties", "$dynamicRef", "$recursiveRef")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_$-]+")

Schema = Any  # a parsed JSON Schema: a dict, or True / False
Path = tuple[str, ...]


def check_mode(mode: str) -> str:
    """The mode in upper case; ValueError for one this registry does not know or build."""
    upper = mode.upper()
    if upper in TRANSITIVE_MODES:
        raise ValueError(f"compatibility {mode} is not supported: transitive modes (checked against every "
                         f"version) are not built; use one of {', '.join(MODES)}")
    if upper not in MODES:
        raise ValueError(f"unknown compatibility {mode!r:.40}: use one of {', '.join(MODES)}")
    return upper


def problems(mode: str, old: Schema, new: Schema) -> list[str]:
    """What breaks when ``new`` follows ``old`` under ``mode`` (BACKWARD, FORWARD, FULL or NONE); [] if nothing."""
    if mode == NONE:
        return []
    if mode == BACKWARD:
        return _Check(BACKWARD_WORDS).schema(old, new, ())
    if mode == FORWARD:
        return _Check(FORWARD_WORDS).schema(new, old, ())
    if mode == FULL:
        return ([f"backward: {message}" for message in _Check(BACKWARD_WORDS).schema(old, new, ())]
                + [f"forward: {message}" for message in _Check(FORWARD_WORDS).schema(new, old, ())])
    raise ValueError(f"unknown compatibility mode {mode!r}")


@dataclass(frozen=True)
class Words:
    """How messages name the two sides of one direction: who writes, who reads, and what a property only
    one side has is called."""

    writer: str
    reader: str
    reader_only: str  # a property only the reader's schema has
    writer_only: str  # a property only the writer's schema has


BACKWARD_WORDS = Words(writer="old", reader="new", reader_only="new", writer_only="removed")
FORWARD_WORDS = Words(writer="new", reader="old", reader_only="removed", writer_only="new")


def render_path(path: Path) -> str:
    """``properties.customer.properties.email``; names that are not plain words in brackets, JSON-quoted."""
    text = ""
    for segment in path:
        text += f".{segment}" if _PLAIN_NAME.fullmatch(segment) else f"[{json.dumps(segment)}]"
    return text.removeprefix(".") or "(root)"


class _Check:
    """One direction: every problem that keeps a record valid for the writer's schema from passing the
    reader's. Recursion follows the schemas' nesting, which the registry bounds (MAX_SCHEMA_DEPTH)."""

    def __init__(self, words: Words):
        self.words = words
        self.found: list[str] = []

    def schema(self, writer: Schema, reader: Schema, path: Path) -> list[str]:
        self._compare(writer, reader, path)
        return self.found

    def _report(self, path: Path, problem: str) -> None:
        self.found.append(f"{render_path(path)}: {problem}")

    def _compare(self, writer: Schema, reader: Schema, path: Path) -> None:
        if writer is False or reader is True or reader == {}:
            return  # the writer writes nothing, or the reader takes anything
        if reader is False:
            self._report(path, f"the {self.words.reader} schema accepts no value here (false), "
                               f"{self.words.writer} records may have one")
            return
        writer = {} if writer is True else writer
        if not isinstance(writer, dict) or not isinstance(reader, dict):
            return  # not a schema: the registry refuses such schemas before they get here
        self._unanalyzed(writer, reader, path)
        writer_types, reader_types = _types(writer), _types(reader)
        self._type(writer_types, reader_types, path)
        self._enum(writer, reader, path)
        shared = _shared_kinds(writer_types, reader_types)
        if "number" in shared:
            self._numbers(writer, reader, path)
        if "string" in shared:
            self._strings(writer, reader, path)
        if "array" in shared:
            self._arrays(writer, reader, path)
        if "object" in shared:
            self._objects(writer, reader, path)

    def _unanalyzed(self, writer: dict, reader: dict, path: Path) -> None:
        for keyword in UNANALYZED:
            changed = (keyword in writer or keyword in reader) and _canonical(writer.get(keyword)) != _canonical(
                reader.get(keyword))
            if changed:
                self._report(path + (keyword,), f"changed, and the compatibility check does not analyze {keyword}: "
                                                 "any change to it counts as breaking")
        tuples = isinstance(writer.get("items"), list) or isinstance(reader.get("items"), list)
        if tuples and _canonical(writer.get("items")) != _canonical(reader.get("items")):
            self._report(path + ("items",), "tuple items changed, and the compatibility check does not analyze "
                                            "tuples: any change to them counts as breaking")

    def _type(self, writer_types: frozenset[str] | None, reader_types: frozenset[str] | None, path: Path) -> None:
        if reader_types is None:
            return
        where = path + ("type",)
        if writer_types is None:
            self._report(where, f"the {self.words.reader} schema allows only {_names(reader_types)}, "
                                f"{self.words.writer} records may be of any type")
            return
        missing = {kind for kind in writer_types if not _type_within(kind, reader_types)}
        if missing:
            self._report(where, f"{self.words.writer} records may be {_names(missing)}, "
                                f"which the {self.words.reader} schema does not allow")

    def _enum(self, writer: dict, reader: dict, path: Path) -> None:
        reader_values = _enum_values(reader)
        if reader_values is None:
            return
        keyword = "const" if "const" in reader else "enum"
        writer_values = _enum_values(writer)
        if writer_values is None:
            self._report(path + (keyword,), f"the {self.words.reader} schema allows only "
                                            f"{_values(reader_values)}, {self.words.writer} records may hold "
                                            "other values")
            return
        allowed = {_canonical(value) for value in reader_values}
        missing = [value for value in writer_values if _canonical(value) not in allowed]
        if missing:
            self._report(path + (keyword,), f"{self.words.writer} records may hold {_values(missing)}, "
                                            f"which the {self.words.reader} schema does not allow")

    # ---- bounds -----------------------------------------------------------------

    def _numbers(self, writer: dict, reader: dict, path: Path) -> None:
        self._lower(path + ("minimum",), _number_bound(writer, "minimum"), _number_bound(reader, "minimum"))
        self._upper(path + ("maximum",), _number_bound(writer, "maximum"), _number_bound(reader, "maximum"))
        self._multiple_of(writer, reader, path + ("multipleOf",))

    def _strings(self, writer: dict, reader: dict, path: Path) -> None:
        self._lower(path + ("minLength",), _count_bound(writer, "minLength"), _count_bound(reader, "minLength"))
        self._upper(path + ("maxLength",), _count_bound(writer, "maxLength"), _count_bound(reader, "maxLength"))
        for keyword in ("pattern", "format"):
            self._same_or_dropped(writer, reader, keyword, path)

    def _arrays(self, writer: dict, reader: dict, path: Path) -> None:
        self._lower(path + ("minItems",), _count_bound(writer, "minItems"), _count_bound(reader, "minItems"))
        self._upper(path + ("maxItems",), _count_bound(writer, "maxItems"), _count_bound(reader, "maxItems"))
        if reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True:
            self._report(path + ("uniqueItems",), f"the {self.words.reader} schema requires unique items, "
                                                  f"{self.words.writer} records may repeat one")
        reader_items, writer_items = reader.get("items", True), writer.get("items", True)
        if not isinstance(reader_items, list) and not isinstance(writer_items, list):
            self._compare(writer_items, reader_items, path + ("items",))

    def _same_or_dropped(self, writer: dict, reader: dict, keyword: str, path: Path) -> None:
        if keyword not in reader or writer.get(keyword) == reader[keyword]:
            return
        words = self.words
        if keyword in writer:
            self._report(path + (keyword,), f"{writer[keyword]!r:.80} in the {words.writer} schema, "
                                            f"{reader[keyword]!r:.80} in the {words.reader} one "
                                            f"({words.writer} records may not match it)")
        else:
            self._report(path + (keyword,), f"only the {words.reader} schema has {keyword} {reader[keyword]!r:.80} "
                                            f"({words.writer} records may not match it)")

    def _lower(self, where: Path, writer: tuple | None, reader: tuple | None) -> None:
        """A lower bound (value, exclusive): the reader's must be no tighter than the writer's."""
        if reader is None or (writer is not None and _at_least_as_tight(writer, reader, lower=True)):
            return
        self._bound_problem(where, writer, reader, "lower", "below")

    def _upper(self, where: Path, writer: tuple | None, reader: tuple | None) -> None:
        """An upper bound (value, exclusive): the reader's must be no tighter than the writer's."""
        if reader is None or (writer is not None and _at_least_as_tight(writer, reader, lower=False)):
            return
        self._bound_problem(where, writer, reader, "upper", "above")

    def _bound_problem(self, where: Path, writer: tuple | None, reader: tuple, kind: str, side: str) -> None:
        words = self.words
        if writer is None:
            self._report(where, f"only the {words.reader} schema has a {kind} bound, {_bound(reader)} "
                                f"({words.writer} records may be {side} it)")
        else:
            self._report(where, f"{kind} bound {_bound(writer)} in the {words.writer} schema, {_bound(reader)} in "
                                f"the {words.reader} one ({words.writer} records may be {side} {_bound(reader)})")

    def _multiple_of(self, writer: dict, reader: dict, where: Path) -> None:
        reader_step, writer_step = _number(reader.get("multipleOf")), _number(writer.get("multipleOf"))
        if reader_step is None or reader_step <= 0:
            return
        if writer_step is None or writer_step <= 0:
            self._report(where, f"only the {self.words.reader} schema has multipleOf {reader['multipleOf']} "
                                f"({self.words.writer} records may not be multiples of it)")
        elif (Fraction(str(writer_step)) / Fraction(str(reader_step))).denominator != 1:
            self._report(where, f"multipleOf {writer['multipleOf']} in the {self.words.writer} schema, "
                                f"{reader['multipleOf']} in the {self.words.reader} one "
                                f"({self.words.writer} records may not be multiples of {reader['multipleOf']})")

    # ---- objects -------------------------------------------------------------------

    def _objects(self, writer: dict, reader: dict, path: Path) -> None:
        self._lower(path + ("minProperties",), _count_bound(writer, "minProperties"),
                    _count_bound(reader, "minProperties"))
        self._upper(path + ("maxProperties",), _count_bound(writer, "maxProperties"),
                    _count_bound(reader, "maxProperties"))
        writer_properties, reader_properties = _properties(writer), _properties(reader)
        writer_extra, reader_extra = writer.get("additionalProperties", True), reader.get("additionalProperties", True)
        self._required(writer, reader, writer_properties, reader_properties, path)
        for name in sorted(writer_properties.keys() | reader_properties.keys()):
            where = path + ("properties", name)
            if name in writer_properties and name in reader_properties:
                self._compare(writer_properties[name], reader_properties[name], where)
            elif name in writer_properties:
                self._writer_only(writer_properties[name], reader_extra, where)
            elif isinstance(writer_extra, dict):
                self._compare(writer_extra, reader_properties[name], where)  # writers may put it in as an extra
        if isinstance(writer_extra, dict):
            self._extras(writer_extra, reader_extra, path + ("additionalProperties",))

    def _required(self, writer: dict, reader: dict, writer_properties: dict, reader_properties: dict,
                  path: Path) -> None:
        newly_required = _required(reader) - _required(writer)
        for name in sorted(newly_required):
            declared = reader_properties.get(name)
            if isinstance(declared, dict) and "default" in declared:
                continue  # Confluent: a required property with a default is compatible
            where = path + ("properties", name)
            if name in writer_properties:
                self._report(where, f"required in the {self.words.reader} schema but optional in the "
                                    f"{self.words.writer} one ({self.words.writer} records may lack it)")
            elif self.words.reader_only == "new":
                self._report(where, f"new required property ({self.words.writer} records lack it)")
            else:
                self._report(where, f"removed property that {self.words.reader} readers require "
                                    f"({self.words.writer} records lack it)")

    def _writer_only(self, declared: Schema, reader_extra: Schema, where: Path) -> None:
        """A property only the writer declares: the reader takes it as an additional property."""
        if reader_extra is False and declared is not False:
            self._report(where, f"{self.words.writer_only} property, and the {self.words.reader} schema allows "
                                f"no additional properties ({self.words.writer} records may carry it)")
        elif isinstance(reader_extra, dict):
            self._compare(declared, reader_extra, where)

    def _extras(self, writer_extra: dict, reader_extra: Schema, where: Path) -> None:
        """The writer's schema allows extra properties of a schema: the reader must take them."""
        if reader_extra is False:
            self._report(where, f"the {self.words.reader} schema allows no additional properties, the "
                                f"{self.words.writer} one allows them ({self.words.writer} records may carry some)")
        else:
            self._compare(writer_extra, reader_extra, where)


# ---- reading schemas ---------------------------------------------------------------


def _types(schema: dict) -> frozenset[str] | None:
    """The JSON types a schema admits (from ``type``, else from its enum or const); None for any type."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(kind for kind in declared if isinstance(kind, str))
    values = _enum_values(schema)
    if values is not None:
        return frozenset(_json_type(value) for value in values)
    return None


def _shared_kinds(writer: frozenset[str] | None, reader: frozenset[str] | None) -> set[str]:
    """Which kinds' keywords to compare: those of values both schemas may see ("integer" counts as "number")."""
    def kinds(types: frozenset[str] | None) -> set[str]:
        if types is None:
            return {"number", "string", "array", "object"}
        return {"number" if kind == "integer" else kind for kind in types}

    return kinds(writer) & kinds(reader)


def _type_within(kind: str, allowed: frozenset[str]) -> bool:
    return kind in allowed or (kind == "integer" and "number" in allowed)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _enum_values(schema: dict) -> list | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return values if isinstance(values, list) else None


def _properties(schema: dict) -> dict:
    properties = schema.get("properties")
    return properties if isinstance(properties, dict) else {}


def _required(schema: dict) -> set[str]:
    required = schema.get("required")
    return {name for name in required if isinstance(name, str)} if isinstance(required, list) else set()


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number_bound(schema: dict, keyword: str) -> tuple | None:
    """The tightest of ``minimum``/``exclusiveMinimum`` (or the maxima) as (value, exclusive); draft 4's boolean
    ``exclusiveMinimum`` makes ``minimum`` exclusive."""
    exclusive_keyword = "exclusiveMinimum" if keyword == "minimum" else "exclusiveMaximum"
    lower = keyword == "minimum"
    bounds = []
    inclusive, exclusive = _number(schema.get(keyword)), schema.get(exclusive_keyword)
    if inclusive is not None:
        bounds.append((inclusive, exclusive is True))
    if _number(exclusive) is not None:
        bounds.append((exclusive, True))
    if not bounds:
        return None
    tightest = bounds[0]
    for bound in bounds[1:]:
        if _at_least_as_tight(bound, tightest, lower):
            tightest = bound
    return tightest


def _count_bound(schema: dict, keyword: str) -> tuple | None:
    value = _number(schema.get(keyword))
    return None if value is None else (value, False)


def _at_least_as_tight(first: tuple, second: tuple, lower: bool) -> bool:
    """Whether bound ``first`` admits no value that ``second`` refuses."""
    (first_value, first_exclusive), (second_value, second_exclusive) = first, second
    if first_value == second_value:
        return first_exclusive or not second_exclusive
    return first_value > second_value if lower else first_value < second_value


def _bound(bound: tuple) -> str:
    value, exclusive = bound
    return f"{value} (exclusive)" if exclusive else str(value)


def _canonical(value: Any) -> str:
    """A JSON value as text that compares equal exactly when the values are equal in JSON (1 is not true)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _names(kinds: set[str] | frozenset[str]) -> str:
    return " or ".join(sorted(kinds))


def _values(values: list) -> str:
    text = ", ".join(_canonical(value) for value in values[:10])
    return text + (f" (and {len(values) - 10} more)" if len(values) > 10 else "")

