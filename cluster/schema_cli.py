"""``rill schema``: register, get, list, check and delete JSON Schemas in the cluster's schema registry.

Registered on the ``rill`` group by cli.py, whose group turns every
RillError into one line ``error: ...`` and exit code 1. ``check`` also
exits 1 when the schema is incompatible, so it can gate a CI job; ``get``
prints the schema alone on stdout (the version line goes to stderr), so
``rill schema get S > s.json`` round-trips.
"""

from __future__ import annotations

import importlib
import json
from typing import IO

import click
from rich.console import Console
from rill.client.errors import InvalidSchemaError
from rill.cluster.tables import build_table

PIPED_OUTPUT_WIDTH = 250
MODES = ("BACKWARD", "FORWARD", "FULL", "NONE")


def _default_bootstrap() -> str:
    """The local cluster's nodes, as every other command's default (cli.py; looked up when a command runs)."""
    return importlib.import_module("rill.cluster.cli").DEFAULT_BOOTSTRAP


bootstrap_option = click.option(
    "--bootstrap", envvar="RILL_BOOTSTRAP", default=_default_bootstrap, show_default="the local cluster's nodes",
    help="Brokers to connect to first: host:port[,host:port...] (env RILL_BOOTSTRAP).")
compatibility_option = click.option(
    "--compatibility", type=click.Choice(MODES, case_sensitive=False),
    help="Compatibility mode (BACKWARD when a subject is new; otherwise the subject's).")


@click.group()
def schema() -> None:
    """Register, get, list, check and delete JSON Schemas (versioned per subject)."""


@schema.command("register")
@click.argument("subject")
@click.argument("schema_file", metavar="FILE", type=click.File("r"))
@compatibility_option
@bootstrap_option
def schema_register(subject: str, schema_file: IO[str], compatibility: str | None, bootstrap: str) -> None:
    """Register the JSON Schema in FILE ("-": stdin) as SUBJECT's next version.

    It must be compatible with the subject's latest version in the subject's
    mode; --compatibility sets the mode from this registration on.
    Registering the latest schema again prints its version.
    """
    from rill.client import Admin

    document = _read_schema(schema_file)
    with Admin(bootstrap) as admin:
        registered = admin.register_schema(subject, document, compatibility=compatibility)
    click.echo(f"subject {subject}: version {registered.version}, schema id {registered.id}")


@schema.command("get")
@click.argument("subject")
@click.option("--version", "version", default="latest", show_default=True, help='A version number or "latest".')
@bootstrap_option
def schema_get(subject: str, version: str, bootstrap: str) -> None:
    """Print a version of SUBJECT's schema (JSON on stdout; subject, version and id on stderr)."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        found = admin.get_schema(subject, version=_version(version))
        mode = admin.get_compatibility(subject)
    click.echo(f"subject {found.subject}: version {found.version}, schema id {found.id}, compatibility {mode}",
               err=True)
    click.echo(json.dumps(found.schema, indent=2, sort_keys=True))


@schema.command("list")
@click.argument("subject", required=False)
@bootstrap_option
def schema_list(subject: str | None, bootstrap: str) -> None:
    """Print every subject, one per line; with SUBJECT, its versions with their schema ids."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        if subject is None:
            for name in admin.list_subjects():
                click.echo(name)
            return
        versions = [admin.get_schema(subject, version=number) for number in admin.list_schema_versions(subject)]
        mode = admin.get_compatibility(subject)
    click.echo(f"subject {subject}: {len(versions)} version(s), compatibility {mode}")
    _console().print(build_table("versions", [("version", lambda found: found.version),
                                              ("schema id", lambda found: found.id)], versions))


@schema.command("check")
@click.argument("subject")
@click.argument("schema_file", metavar="FILE", type=click.File("r"))
@compatibility_option
@bootstrap_option
def schema_check(subject: str, schema_file: IO[str], compatibility: str | None, bootstrap: str) -> None:
    """Check whether FILE's schema could be registered next under SUBJECT; registers nothing.

    Prints what breaks, each with its JSON path, and exits 1 when it is incompatible.
    """
    from rill.client import Admin

    document = _read_schema(schema_file)
    with Admin(bootstrap) as admin:
        report = admin.check_compatibility(subject, document, compatibility=compatibility)
    against = "no version yet" if report.version is None else f"version {report.version}"
    if report.compatible:
        click.echo(f"compatible ({report.mode}) with subject {subject}: {against}")
        return
    click.echo(f"incompatible ({report.mode}) with subject {subject}, {against}:")
    for message in report.messages:
        click.echo(f"  - {message}")
    raise SystemExit(1)


@schema.command("delete")
@click.argument("subject")
@click.option("--version", type=click.IntRange(min=1), help="Only this version [default: every version].")
@click.option("--permanent", is_flag=True,
              help="Forget the versions for good (soft-deleted ones too); by default their ids stay readable.")
@bootstrap_option
def schema_delete(subject: str, version: int | None, permanent: bool, bootstrap: str) -> None:
    """Delete a version of SUBJECT, or all its versions.

    A soft delete (the default) keeps the schemas readable by id, so records
    written with them still decode, but topics with schema.validation stop
    taking them.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        deleted = admin.delete_schema(subject, version=version, permanent=permanent)
    kind = "permanently deleted" if permanent else "deleted"
    click.echo(f"subject {subject}: {kind} version(s) {', '.join(map(str, deleted))}")


@schema.command("compatibility")
@click.argument("subject")
@click.argument("mode", required=False, type=click.Choice(MODES, case_sensitive=False))
@bootstrap_option
def schema_compatibility(subject: str, mode: str | None, bootstrap: str) -> None:
    """Print SUBJECT's compatibility mode, or set it to MODE."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        if mode is not None:
            admin.set_compatibility(subject, mode)
        current = admin.get_compatibility(subject)
    click.echo(f"subject {subject}: compatibility {current}")


def _read_schema(schema_file: IO[str]) -> object:
    """The JSON in the file; InvalidSchemaError (one line ``error: ...``) if it is not JSON."""
    text = schema_file.read()
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidSchemaError(f"{schema_file.name} is not JSON: {error}") from None


def _version(text: str) -> int | str:
    if text == "latest":
        return text
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f'{text!r} is neither a version number nor "latest"', param_hint="--version") from None


def _console() -> Console:
    """A rich console; when stdout is not a terminal, wide enough that table rows stay on one line (for grep)."""
    output = Console()
    return output if output.is_terminal else Console(width=PIPED_OUTPUT_WIDTH)
