"""``rill schema`` against the shared broker: register, get, list, check, delete, compatibility, and errors.

Commands run in-process through click's CliRunner; schema files are written
to the test's tmp_path (and one goes through stdin).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rill.client import Admin
from rill.cluster.cli import main

ORDER = {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}
WITH_NOTE = {**ORDER, "properties": {**ORDER["properties"], "note": {"type": "string"}}}
REQUIRING_CURRENCY = {**ORDER, "properties": {**ORDER["properties"], "currency": {"type": "string"}},
                      "required": ["order_id", "currency"]}


@pytest.fixture
def rill(shared_broker):
    """Runs ``rill schema <args> --bootstrap <the shared broker>``, with ``stdin`` as its input."""
    def run(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(main, ["schema", *args, "--bootstrap", shared_broker.bootstrap], input=stdin)

    return run


@pytest.fixture
def subject(topic_name: str) -> str:
    return f"{topic_name}-value"


def schema_file(tmp_path: Path, name: str, document: object) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    return str(path)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_register_get_and_list(rill, admin: Admin, subject: str, tmp_path: Path):
    result = rill("register", subject, schema_file(tmp_path, "order", ORDER), "--compatibility", "full")
    assert result.exit_code == 0, result.output
    first_id = admin.get_schema(subject).id
    assert result.stdout == f"subject {subject}: version 1, schema id {first_id}\n"
    result = rill("register", subject, "-", stdin=json.dumps(WITH_NOTE))
    assert result.exit_code == 0, result.output
    second_id = admin.get_schema(subject).id
    got = rill("get", subject, "--version", "1")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout) == ORDER
    assert got.stderr == f"subject {subject}: version 1, schema id {first_id}, compatibility FULL\n"
    assert json.loads(rill("get", subject).stdout) == WITH_NOTE
    assert subject in rill("list").stdout.splitlines()
    listed = rill("list", subject)
    assert listed.exit_code == 0, listed.output
    assert f"subject {subject}: 2 version(s), compatibility FULL" in listed.stdout
    rows = [line.split("│")[1:-1] for line in listed.stdout.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [["1", str(first_id)], ["2", str(second_id)]]


def test_check_prints_what_breaks_and_exits_1(rill, admin: Admin, subject: str, tmp_path: Path):
    admin.register_schema(subject, ORDER)
    good = rill("check", subject, schema_file(tmp_path, "note", WITH_NOTE))
    assert (good.exit_code, good.stdout) == (0, f"compatible (BACKWARD) with subject {subject}: version 1\n")
    bad = rill("check", subject, schema_file(tmp_path, "currency", REQUIRING_CURRENCY))
    assert bad.exit_code == 1
    assert bad.stdout.splitlines() == [f"incompatible (BACKWARD) with subject {subject}, version 1:",
                                       "  - properties.currency: new required property (old records lack it)"]
    anyway = rill("check", subject, schema_file(tmp_path, "currency", REQUIRING_CURRENCY), "--compatibility", "NONE")
    assert anyway.exit_code == 0, anyway.output
    assert admin.list_schema_versions(subject) == [1]


def test_register_refuses_an_incompatible_schema_in_one_line(rill, admin: Admin, subject: str, tmp_path: Path):
    admin.register_schema(subject, ORDER)
    result = rill("register", subject, schema_file(tmp_path, "currency", REQUIRING_CURRENCY))
    assert_one_line_error(result, "IncompatibleSchemaError", "properties.currency: new required property")
    assert admin.list_schema_versions(subject) == [1]


def test_bad_files_and_unknown_subjects_are_one_line_errors(rill, subject: str, tmp_path: Path):
    not_json = tmp_path / "broken.json"
    not_json.write_text("{not json")
    assert_one_line_error(rill("register", subject, str(not_json)), "InvalidSchemaError", "is not JSON")
    assert_one_line_error(rill("register", subject, schema_file(tmp_path, "list", [1, 2])), "InvalidSchemaError")
    assert_one_line_error(rill("get", subject), "SchemaNotFoundError", subject)
    assert_one_line_error(rill("delete", subject), "SchemaNotFoundError", subject)
    usage = rill("get", subject, "--version", "newest")
    assert usage.exit_code == 2 and "neither a version number nor" in usage.output


def test_delete_soft_then_permanent(rill, admin: Admin, subject: str, tmp_path: Path):
    admin.register_schema(subject, ORDER)
    admin.register_schema(subject, WITH_NOTE)
    result = rill("delete", subject, "--version", "2")
    assert (result.exit_code, result.stdout) == (0, f"subject {subject}: deleted version(s) 2\n")
    assert admin.list_schema_versions(subject) == [1]
    result = rill("delete", subject, "--permanent")
    assert (result.exit_code, result.stdout) == (0, f"subject {subject}: permanently deleted version(s) 1, 2\n")
    assert subject not in admin.list_subjects()


def test_compatibility_shows_and_sets_the_mode(rill, admin: Admin, subject: str):
    admin.register_schema(subject, ORDER)
    assert rill("compatibility", subject).stdout == f"subject {subject}: compatibility BACKWARD\n"
    result = rill("compatibility", subject, "forward")
    assert (result.exit_code, result.stdout) == (0, f"subject {subject}: compatibility FORWARD\n")
    assert admin.get_compatibility(subject) == "FORWARD"
