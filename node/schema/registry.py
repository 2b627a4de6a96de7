"""The schema registry's requests: changes through the controller, reads from this broker's replica.

Registering and deleting happen on the controller only (elsewhere
NotControllerError, which clients retry at the controller), like topic
creation: the controller parses and compiles the schema, checks it against
the subject's latest version in the subject's mode, and submits a
replicated command (registry_state.py). Registrations are serialized, and
the command carries the version the check was made against, so two
registrations can never both pass a check against the same latest version.
Reads (get, list, check) are served by any broker from its replica of the
state, which trails the controller by at most a Raft commit.

Parsing, compiling (fastjsonschema: up to a few hundred ms for a large
schema) and checking run on worker threads, a bounded number at a time, so
the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from rill.client import protocol
from rill.client.errors import (
    IncompatibleSchemaError,
    InvalidConfigError,
    InvalidSubjectError,
    NotControllerError,
    RequestTimeoutError,
    RillError,
    SchemaNotFoundError,
    SchemaRegistryFullError,
    SchemaTooLargeError,
    ThrottlingQuotaExceededError,
    TooManySchemaVersionsError,
    TooManySubjectsError,
    error_for_code,
)
from rill.client.schema_registry import canonical_text, compile_schema, parse_schema, subject_problem
from rill.node.schema.compatibility import DEFAULT_MODE, check_mode, problems
from rill.node.schema.registry_state import (
    MAX_REGISTRY_BYTES,
    MAX_SCHEMA_BYTES,
    MAX_SUBJECTS,
    MAX_VERSIONS_PER_SUBJECT,
    SUBJECT_CHANGED,
    Registry,
    RegistryState,
    SubjectState,
)

MESSAGES_MAX = 100  # problems reported per check; a schema can break in more places than anyone reads
PREPARING_MAX = 2  # schemas parsed and compiled at once on this broker: each may take ~0.3 s of CPU
PREPARING_WAITING_MAX = 32  # more waiting than this are refused (ThrottlingQuotaExceededError)
REGISTER_ATTEMPTS = 3  # checks redone when the subject changed under one (only across controller changes)

Submit = Callable[..., Awaitable[Any]]


def check_subject(subject: str) -> str:
    """The subject name, if it is one (client/schema_registry.py ``subject_problem``); InvalidSubjectError if not."""
    problem = subject_problem(subject)
    if problem is not None:
        raise InvalidSubjectError(problem)
    return subject


def mode_or_none(compatibility: str) -> str | None:
    """A mode from the wire: "" for none; InvalidConfigError for an unknown one."""
    if not compatibility:
        return None
    try:
        return check_mode(compatibility)
    except ValueError as error:
        raise InvalidConfigError(str(error)) from None


def prepare_schema(text: str, stored: Callable[[str], bool]) -> tuple[dict, str]:
    """The schema and its canonical text, once it parses, fits and compiles (unless ``stored`` says the registry
    holds it already, so it compiled before); the registry's typed errors."""
    schema = parse_schema(text)
    canonical = canonical_text(schema)
    size = len(canonical.encode())
    if size > MAX_SCHEMA_BYTES:
        raise SchemaTooLargeError(f"the schema takes {size} bytes as canonical JSON, over {MAX_SCHEMA_BYTES}")
    if not stored(canonical):
        compile_schema(schema)
    return schema, canonical


class SchemaRegistry:
    """Serves the five schema APIs; ``submit`` runs a replicated command on the controller (Controller.submit)."""

    def __init__(self, state: RegistryState, submit: Submit, is_controller: Callable[[], bool]):
        self._state = state
        self._submit = submit
        self._is_controller = is_controller
        self._registering = asyncio.Lock()
        self._preparing = asyncio.Semaphore(PREPARING_MAX)
        self._waiting = 0

    def routes(self) -> dict[int, Callable[[Any], Any]]:
        return {
            protocol.REGISTER_SCHEMA.key: self.register,
            protocol.GET_SCHEMA.key: self.get,
            protocol.LIST_SCHEMAS.key: self.list,
            protocol.CHECK_SCHEMA_COMPATIBILITY.key: self.check,
            protocol.DELETE_SCHEMA.key: self.delete,
        }

    # ---- changes (controller) ---------------------------------------------------------

    async def register(self, request: protocol.RegisterSchemaRequest) -> protocol.RegisterSchemaResponse:
        try:
            version, schema_id = await self._register(request)
        except IncompatibleSchemaError as error:
            return protocol.RegisterSchemaResponse(error.code, str(error), -1, -1, error.messages)
        except RillError as error:
            return protocol.RegisterSchemaResponse(error.code, str(error), -1, -1, [])
        return protocol.RegisterSchemaResponse(0, "", version, schema_id, [])

    async def _register(self, request: protocol.RegisterSchemaRequest) -> tuple[int, int]:
        subject = check_subject(request.subject)
        mode = mode_or_none(request.compatibility)
        self._check_controller()
        if request.schema is None:
            return await self._set_compatibility(subject, mode)
        schema, text = await self._prepare(request.schema)
        async with self._registering:
            for _ in range(REGISTER_ATTEMPTS):
                latest = await self._check_against_latest(subject, schema, text, mode)
                code, version, schema_id = await self._submit(self._state.register_schema, subject, text, mode,
                                                              latest)
                if code != SUBJECT_CHANGED:
                    if code:
                        raise error_for_code(code, _limit_message(code, subject))
                    return version, schema_id
        raise RequestTimeoutError(f"subject {subject!r} kept changing while the schema was checked; retry")

    async def _check_against_latest(self, subject: str, schema: dict, text: str, mode: str | None) -> int:
        """The latest version the schema is compatible with (0: none); IncompatibleSchemaError if it is not.
        A schema the subject holds already is not checked: registering it again returns its version."""
        registry = self._state.registry
        current = registry.subjects.get(subject)
        latest = current.latest() if current is not None else None
        if latest is None:
            return 0
        schema_id = registry.schema_id_of(text)
        if schema_id is not None and schema_id in current.live_ids():
            return latest.version
        effective = mode or current.compatibility
        found = await asyncio.to_thread(_problems_with_latest, registry, latest.schema_id, effective, schema)
        if found:
            raise IncompatibleSchemaError(
                f"the schema is not {effective} compatible with version {latest.version} of subject {subject!r}: "
                + "; ".join(found), found)
        return latest.version

    async def _set_compatibility(self, subject: str, mode: str | None) -> tuple[int, int]:
        if mode is None:
            raise InvalidConfigError("give a compatibility mode to set (BACKWARD, FORWARD, FULL or NONE)")
        code = await self._submit(self._state.set_compatibility, subject, mode)
        if code:
            raise error_for_code(code, _limit_message(code, subject))
        return -1, -1

    async def delete(self, request: protocol.DeleteSchemaRequest) -> protocol.DeleteSchemaResponse:
        try:
            subject = check_subject(request.subject)
            if request.version != -1 and request.version < 1:
                raise SchemaNotFoundError(f"subject {subject!r} has no version {request.version} (versions start at 1)")
            self._check_controller()
            version = None if request.version == -1 else request.version
            code, versions = await self._submit(self._state.delete_versions, subject, version, request.permanent)
            if code:
                what = "versions" if version is None else f"version {version}"
                kind = "" if request.permanent else " not deleted yet"
                raise error_for_code(code, f"subject {subject!r} has no {what}{kind}")
        except RillError as error:
            return protocol.DeleteSchemaResponse(error.code, str(error), [])
        return protocol.DeleteSchemaResponse(0, "", list(versions))

    async def _prepare(self, text: str) -> tuple[dict, str]:
        """prepare_schema on a worker thread, PREPARING_MAX at a time, so a flood of large schemas cannot queue
        unbounded CPU work."""
        if self._waiting >= PREPARING_WAITING_MAX:
            raise ThrottlingQuotaExceededError(f"this broker is checking {self._waiting} schemas already; retry later")
        self._waiting += 1
        try:
            async with self._preparing:
                return await asyncio.to_thread(prepare_schema, text, self._is_stored)
        finally:
            self._waiting -= 1

    def _is_stored(self, text: str) -> bool:
        return self._state.registry.schema_id_of(text) is not None

    def _check_controller(self) -> None:
        if not self._is_controller():
            raise NotControllerError("this broker is not the controller (Raft leader)")

    # ---- reads (any broker) ----------------------------------------------------------------

    def get(self, request: protocol.GetSchemaRequest) -> protocol.GetSchemaResponse:
        registry = self._state.registry
        try:
            if request.id != protocol.NO_SCHEMA_ID:
                return self._by_id(registry, request.id)
            current = _subject(registry, check_subject(request.subject))
            entry = current.latest() if request.version == protocol.LATEST_VERSION else current.find(request.version)
            if entry is None:
                raise SchemaNotFoundError(f"subject {current.name!r} has no version {request.version}"
                                          if request.version != protocol.LATEST_VERSION else
                                          f"subject {current.name!r} has no versions")
            text = registry.schemas[entry.schema_id].text
            return protocol.GetSchemaResponse(0, "", current.name, entry.version, entry.schema_id, text,
                                              current.compatibility)
        except RillError as error:
            return protocol.GetSchemaResponse(error.code, str(error), "", -1, -1, "", "")

    def _by_id(self, registry: Registry, schema_id: int) -> protocol.GetSchemaResponse:
        stored = registry.schemas.get(schema_id)
        if stored is None:
            raise SchemaNotFoundError(f"no schema with id {schema_id}")
        return protocol.GetSchemaResponse(0, "", stored.subject, stored.version, schema_id, stored.text, "")

    def list(self, request: protocol.ListSchemasRequest) -> protocol.ListSchemasResponse:
        registry = self._state.registry
        try:
            if not request.subject:
                subjects = sorted(name for name, subject in registry.subjects.items() if subject.latest() is not None)
                return protocol.ListSchemasResponse(0, "", subjects, [], "")
            current = registry.subjects.get(check_subject(request.subject))
            if current is None:
                return protocol.ListSchemasResponse(0, "", [], [], DEFAULT_MODE)
            return protocol.ListSchemasResponse(0, "", [], [entry.version for entry in current.live()],
                                                current.compatibility)
        except RillError as error:
            return protocol.ListSchemasResponse(error.code, str(error), [], [], "")

    async def check(self, request: protocol.CheckSchemaRequest) -> protocol.CheckSchemaResponse:
        try:
            subject = check_subject(request.subject)
            mode = mode_or_none(request.compatibility)
            schema, _ = await self._prepare(request.schema)
            registry = self._state.registry
            current = registry.subjects.get(subject)
            effective = mode or (current.compatibility if current is not None else DEFAULT_MODE)
            latest = current.latest() if current is not None else None
            if latest is None:
                return protocol.CheckSchemaResponse(0, "", True, [], effective, -1)
            found = await asyncio.to_thread(_problems_with_latest, registry, latest.schema_id, effective, schema)
        except RillError as error:
            return protocol.CheckSchemaResponse(error.code, str(error), False, [], "", -1)
        return protocol.CheckSchemaResponse(0, "", not found, found, effective, latest.version)


def _subject(registry: Registry, name: str) -> SubjectState:
    current = registry.subjects.get(name)
    if current is None or current.latest() is None:
        raise SchemaNotFoundError(f"subject {name!r} not found")
    return current


def _problems_with_latest(registry: Registry, schema_id: int, mode: str, schema: dict) -> list[str]:
    """What breaks between the stored schema ``schema_id`` and ``schema`` (at most MESSAGES_MAX problems)."""
    found = problems(mode, json.loads(registry.schemas[schema_id].text), schema)
    if len(found) > MESSAGES_MAX:
        found = [*found[:MESSAGES_MAX], f"... and {len(found) - MESSAGES_MAX} more problems"]
    return found


def _limit_message(code: int, subject: str) -> str:
    """The message of a limit's error code from a replicated command."""
    return {
        TooManySubjectsError.code: f"the registry holds {MAX_SUBJECTS} subjects, the most it allows: delete "
                                   "subjects permanently before adding others",
        TooManySchemaVersionsError.code: f"subject {subject!r} holds {MAX_VERSIONS_PER_SUBJECT} versions (deleted "
                                         "ones count), the most it allows: delete some permanently first",
        SchemaRegistryFullError.code: f"the registry's schemas take {MAX_REGISTRY_BYTES} bytes, the most it "
                                      "allows: delete schemas permanently first",
    }.get(code, "")
