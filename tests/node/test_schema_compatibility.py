"""JSON Schema compatibility (node/schema/compatibility.py): each mode, the analyzed keywords, and the messages.

BACKWARD asks whether data written with the old schema passes the new one;
FORWARD the reverse; FULL both; NONE nothing. Every message starts with the
JSON path of the problem.
"""

from __future__ import annotations

import pytest
from rill.node.schema.compatibility import (
    BACKWARD,
    FORWARD,
    FULL,
    NONE,
    check_mode,
    problems,
    render_path,
)

ORDER = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "amount_cents": {"type": "integer", "minimum": 0},
    },
    "required": ["order_id", "amount_cents"],
}


def obj(properties: dict, required: list[str] = (), **keywords) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), **keywords}


def with_property(schema: dict, name: str, definition: dict, required: bool = False) -> dict:
    return {**schema, "properties": {**schema["properties"], name: definition},
            "required": [*schema["required"], *([name] if required else [])]}


def without_property(schema: dict, name: str) -> dict:
    return {**schema, "properties": {key: value for key, value in schema["properties"].items() if key != name},
            "required": [key for key in schema["required"] if key != name]}


def compatible(mode: str, old: dict, new: dict) -> bool:
    return problems(mode, old, new) == []


# ---- modes --------------------------------------------------------------------------------


def test_the_same_schema_is_compatible_in_every_mode():
    for mode in (BACKWARD, FORWARD, FULL, NONE):
        assert problems(mode, ORDER, ORDER) == []


def test_none_accepts_anything():
    assert problems(NONE, ORDER, {"type": "string"}) == []


def test_new_required_property_breaks_backward_with_the_example_message():
    new = with_property(ORDER, "currency", {"type": "string"}, required=True)
    assert problems(BACKWARD, ORDER, new) == ["properties.currency: new required property (old records lack it)"]
    assert compatible(FORWARD, ORDER, new)  # old readers ignore it (open content model)


def test_new_optional_property_is_backward_and_forward_compatible():
    new = with_property(ORDER, "currency", {"type": "string"})
    assert compatible(BACKWARD, ORDER, new)
    assert compatible(FORWARD, ORDER, new)
    assert compatible(FULL, ORDER, new)


def test_required_property_with_a_default_is_backward_compatible():
    new = with_property(ORDER, "currency", {"type": "string", "default": "EUR"}, required=True)
    assert compatible(BACKWARD, ORDER, new)


def test_removing_a_required_property_breaks_forward_only():
    new = without_property(ORDER, "amount_cents")
    assert compatible(BACKWARD, ORDER, new)  # the new schema is open: old records' amount_cents is fine
    assert problems(FORWARD, ORDER, new) == [
        "properties.amount_cents: removed property that old readers require (new records lack it)"]


def test_removing_an_optional_property_from_an_open_schema_is_fully_compatible():
    old = with_property(ORDER, "note", {"type": "string"})
    assert compatible(FULL, old, ORDER)


def test_removing_a_property_from_a_closed_schema_breaks_backward():
    old = with_property(ORDER, "note", {"type": "string"}) | {"additionalProperties": False}
    new = ORDER | {"additionalProperties": False}
    assert problems(BACKWARD, old, new) == [
        "properties.note: removed property, and the new schema allows no additional properties "
        "(old records may carry it)"]


def test_adding_an_optional_property_to_a_closed_schema_is_compatible_both_ways():
    old = ORDER | {"additionalProperties": False}
    new = with_property(ORDER, "note", {"type": "string"}) | {"additionalProperties": False}
    assert compatible(BACKWARD, old, new)
    assert problems(FORWARD, old, new) == [
        "properties.note: new property, and the old schema allows no additional properties "
        "(new records may carry it)"]


def test_making_an_optional_property_required_breaks_backward():
    old = with_property(ORDER, "note", {"type": "string"})
    new = {**old, "required": [*old["required"], "note"]}
    assert problems(BACKWARD, old, new) == [
        "properties.note: required in the new schema but optional in the old one (old records may lack it)"]
    assert compatible(FORWARD, old, new)


def test_full_reports_both_directions_with_their_prefix():
    new = {**ORDER, "properties": {**ORDER["properties"], "order_id": {"type": "string"}}}
    assert problems(FULL, ORDER, new) == [
        "backward: properties.order_id.type: old records may be integer, which the new schema does not allow",
        "forward: properties.order_id.type: new records may be string, which the old schema does not allow",
    ]


@pytest.mark.parametrize("mode", ["backward", "Forward", "FULL", "NONE"])
def test_modes_are_case_insensitive(mode):
    assert check_mode(mode) == mode.upper()


@pytest.mark.parametrize("mode", ["BACKWARD_TRANSITIVE", "FULL_TRANSITIVE", "FORWARD_TRANSITIVE"])
def test_transitive_modes_are_refused_as_not_built(mode):
    with pytest.raises(ValueError, match="transitive modes .* are not built"):
        check_mode(mode)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown compatibility 'SIDEWAYS'"):
        check_mode("SIDEWAYS")


# ---- types ------------------------------------------------------------------------------------


def test_widening_a_type_is_backward_compatible_and_narrowing_is_not():
    narrow, wide = {"type": "integer"}, {"type": ["integer", "null"]}
    assert compatible(BACKWARD, narrow, wide)
    assert problems(BACKWARD, wide, narrow) == ["type: old records may be null, which the new schema does not allow"]


def test_integer_is_within_number():
    assert compatible(BACKWARD, {"type": "integer"}, {"type": "number"})
    assert problems(BACKWARD, {"type": "number"}, {"type": "integer"}) == [
        "type: old records may be number, which the new schema does not allow"]


def test_changing_a_nested_property_type_names_the_nested_path():
    old = obj({"customer": obj({"email": {"type": "string"}}, ["email"])}, ["customer"])
    new = obj({"customer": obj({"email": {"type": "integer"}}, ["email"])}, ["customer"])
    assert problems(BACKWARD, old, new) == [
        "properties.customer.properties.email.type: old records may be string, which the new schema does not allow"]


def test_adding_a_type_to_an_untyped_schema_breaks_backward():
    assert problems(BACKWARD, {}, {"type": "object"}) == [
        "type: the new schema allows only object, old records may be of any type"]
    assert compatible(BACKWARD, {"type": "object"}, {})


def test_boolean_schemas():
    assert compatible(BACKWARD, False, {"type": "string"})  # nothing was ever written
    assert compatible(BACKWARD, {"type": "string"}, True)
    assert problems(BACKWARD, {"type": "string"}, False) == [
        "(root): the new schema accepts no value here (false), old records may have one"]
    assert problems(BACKWARD, True, {"type": "string"}) == [
        "type: the new schema allows only string, old records may be of any type"]


# ---- enums and constants ---------------------------------------------------------------------------


def test_adding_enum_values_is_backward_compatible_removing_them_is_not():
    small, large = {"enum": ["new", "paid"]}, {"enum": ["new", "paid", "shipped"]}
    assert compatible(BACKWARD, small, large)
    assert problems(BACKWARD, large, small) == [
        'enum: old records may hold "shipped", which the new schema does not allow']
    assert problems(FORWARD, small, large) == [
        'enum: new records may hold "shipped", which the old schema does not allow']


def test_an_enum_where_there_was_none_breaks_backward():
    assert problems(BACKWARD, {"type": "string"}, {"type": "string", "enum": ["a"]}) == [
        'enum: the new schema allows only "a", old records may hold other values']


def test_enum_equality_is_json_equality():
    assert problems(BACKWARD, {"enum": [1]}, {"enum": [True]}) != []
    assert problems(BACKWARD, {"enum": [True]}, {"enum": [True, 1]}) == []


def test_const_counts_as_a_one_value_enum():
    assert compatible(BACKWARD, {"const": "v1"}, {"enum": ["v1", "v2"]})
    assert problems(BACKWARD, {"enum": ["v1", "v2"]}, {"const": "v1"}) == [
        'const: old records may hold "v2", which the new schema does not allow']


def test_enum_values_give_the_writer_types():
    assert compatible(BACKWARD, {"enum": ["a", "b"]}, {"type": "string"})
    assert problems(BACKWARD, {"enum": ["a", 1]}, {"type": "string"}) == [
        "type: old records may be integer, which the new schema does not allow"]


# ---- bounds ------------------------------------------------------------------------------------------


def test_numeric_bounds_may_loosen_but_not_tighten_backward():
    old = {"type": "integer", "minimum": 0, "maximum": 100}
    assert compatible(BACKWARD, old, {"type": "integer", "minimum": -5, "maximum": 1000})
    assert compatible(BACKWARD, old, {"type": "integer"})
    assert problems(BACKWARD, old, {"type": "integer", "minimum": 1, "maximum": 50}) == [
        "minimum: lower bound 0 in the old schema, 1 in the new one (old records may be below 1)",
        "maximum: upper bound 100 in the old schema, 50 in the new one (old records may be above 50)",
    ]


def test_a_new_bound_breaks_backward():
    assert problems(BACKWARD, {"type": "number"}, {"type": "number", "exclusiveMinimum": 0}) == [
        "minimum: only the new schema has a lower bound, 0 (exclusive) (old records may be below it)"]


def test_exclusive_and_inclusive_bounds_compare_exactly():
    assert compatible(BACKWARD, {"type": "number", "exclusiveMaximum": 10}, {"type": "number", "maximum": 10})
    assert problems(BACKWARD, {"type": "number", "maximum": 10}, {"type": "number", "exclusiveMaximum": 10}) != []
    draft4 = {"type": "number", "maximum": 10, "exclusiveMaximum": True}
    assert compatible(BACKWARD, draft4, {"type": "number", "exclusiveMaximum": 10})


def test_multiple_of():
    assert compatible(BACKWARD, {"type": "number", "multipleOf": 10}, {"type": "number", "multipleOf": 5})
    assert compatible(BACKWARD, {"type": "number", "multipleOf": 0.3}, {"type": "number", "multipleOf": 0.1})
    assert problems(BACKWARD, {"type": "number", "multipleOf": 5}, {"type": "number", "multipleOf": 10}) == [
        "multipleOf: multipleOf 5 in the old schema, 10 in the new one (old records may not be multiples of 10)"]
    assert problems(BACKWARD, {"type": "number"}, {"type": "number", "multipleOf": 2}) == [
        "multipleOf: only the new schema has multipleOf 2 (old records may not be multiples of it)"]


def test_string_lengths_pattern_and_format():
    old = {"type": "string", "minLength": 1, "maxLength": 10, "pattern": "^[a-z]+$"}
    assert compatible(BACKWARD, old, {"type": "string"})
    assert problems(BACKWARD, old, {**old, "maxLength": 5}) == [
        "maxLength: upper bound 10 in the old schema, 5 in the new one (old records may be above 5)"]
    assert problems(BACKWARD, old, {**old, "pattern": "^[a-c]+$"}) == [
        "pattern: '^[a-z]+$' in the old schema, '^[a-c]+$' in the new one (old records may not match it)"]
    assert problems(BACKWARD, {"type": "string"}, {"type": "string", "format": "email"}) == [
        "format: only the new schema has format 'email' (old records may not match it)"]


def test_bounds_of_a_kind_the_schemas_do_not_share_are_not_compared():
    assert compatible(BACKWARD, {"type": "string"}, {"type": ["string", "integer"], "minimum": 5})


# ---- arrays ------------------------------------------------------------------------------------------


def test_array_items_are_compared_and_named_by_path():
    old = obj({"lines": {"type": "array", "items": obj({"sku": {"type": "string"}}, ["sku"])}}, ["lines"])
    widened = obj({"lines": {"type": "array", "items": obj({"sku": {"type": ["string", "null"]}}, ["sku"])}},
                  ["lines"])
    assert compatible(BACKWARD, old, widened)
    assert problems(BACKWARD, widened, old) == [
        "properties.lines.items.properties.sku.type: old records may be null, which the new schema does not allow"]


def test_array_bounds_and_unique_items():
    old = {"type": "array", "maxItems": 10}
    assert problems(BACKWARD, old, {"type": "array", "maxItems": 3, "uniqueItems": True}) == [
        "maxItems: upper bound 10 in the old schema, 3 in the new one (old records may be above 3)",
        "uniqueItems: the new schema requires unique items, old records may repeat one",
    ]
    assert compatible(BACKWARD, {"type": "array", "minItems": 2, "uniqueItems": True}, {"type": "array"})


def test_tuple_items_count_as_changed_when_they_differ():
    old = {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}
    assert compatible(BACKWARD, old, old)
    assert problems(BACKWARD, old, {"type": "array", "items": [{"type": "string"}]}) == [
        "items: tuple items changed, and the compatibility check does not analyze tuples: any change to them "
        "counts as breaking"]


# ---- additionalProperties ------------------------------------------------------------------------------


def test_partially_open_schema_must_keep_accepting_its_extras():
    old = obj({"id": {"type": "integer"}}, ["id"], additionalProperties={"type": "string"})
    assert compatible(BACKWARD, old, obj({"id": {"type": "integer"}}, ["id"]))  # open: takes anything
    assert problems(BACKWARD, old, obj({"id": {"type": "integer"}}, ["id"], additionalProperties=False)) == [
        "additionalProperties: the new schema allows no additional properties, the old one allows them "
        "(old records may carry some)"]
    assert problems(BACKWARD, old, obj({"id": {"type": "integer"}}, ["id"], additionalProperties={"type": "integer"})
                    ) == ["additionalProperties.type: old records may be string, which the new schema does not allow"]


def test_property_added_must_accept_what_the_old_extras_allowed():
    old = obj({"id": {"type": "integer"}}, ["id"], additionalProperties={"type": "string"})
    assert compatible(BACKWARD, old, with_property(old, "note", {"type": "string"}))
    assert problems(BACKWARD, old, with_property(old, "note", {"type": "integer"})) == [
        "properties.note.type: old records may be string, which the new schema does not allow"]


def test_property_removed_must_fit_the_new_extras_schema():
    new = obj({"id": {"type": "integer"}}, ["id"], additionalProperties={"type": "string"})
    old = with_property(new, "count", {"type": "integer"})
    assert problems(BACKWARD, old, new) == [
        "properties.count.type: old records may be integer, which the new schema does not allow"]
    assert compatible(BACKWARD, with_property(new, "label", {"type": "string"}), new)


def test_closing_an_open_schema_that_keeps_its_properties_is_compatible():
    assert compatible(BACKWARD, ORDER, ORDER | {"additionalProperties": False})


# ---- what the check does not analyze ------------------------------------------------------------------


def test_unanalyzed_keywords_must_stay_equal():
    old = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert compatible(FULL, old, dict(old))
    assert problems(BACKWARD, old, {"anyOf": [{"type": "string"}]}) == [
        "anyOf: changed, and the compatibility check does not analyze anyOf: any change to it counts as breaking"]


def test_references_and_definitions_count_as_unanalyzed():
    old = {"$ref": "#/definitions/a", "definitions": {"a": {"type": "string"}}}
    new = {"$ref": "#/definitions/a", "definitions": {"a": {"type": "integer"}}}
    assert problems(BACKWARD, old, new) == [
        "definitions: changed, and the compatibility check does not analyze definitions: any change to it counts "
        "as breaking"]


def test_annotations_and_unknown_keywords_are_ignored():
    old = {"type": "string", "title": "a", "description": "b", "examples": ["x"], "x-owner": "team-a"}
    new = {"type": "string", "title": "c", "description": "d", "default": "y", "x-owner": "team-b"}
    assert problems(FULL, old, new) == []


# ---- messages ---------------------------------------------------------------------------------------------


def test_several_problems_are_all_reported():
    new = obj({"order_id": {"type": "string"}, "amount_cents": {"type": "integer", "minimum": 1},
               "currency": {"type": "string"}}, ["order_id", "amount_cents", "currency"])
    assert problems(BACKWARD, ORDER, new) == [
        "properties.currency: new required property (old records lack it)",
        "properties.amount_cents.minimum: lower bound 0 in the old schema, 1 in the new one "
        "(old records may be below 1)",
        "properties.order_id.type: old records may be integer, which the new schema does not allow",
    ]


def test_paths_quote_names_that_are_not_plain_words():
    assert render_path(("properties", "a.b", "properties", "x y", "type")) == (
        'properties["a.b"].properties["x y"].type')
    assert render_path(()) == "(root)"
    old = obj({"a.b": {"type": "string"}})
    assert problems(BACKWARD, old, obj({"a.b": {"type": "integer"}})) == [
        'properties["a.b"].type: old records may be string, which the new schema does not allow']
