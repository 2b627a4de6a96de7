"""The schema registry's replicated state: subjects, their versions, schema ids and compatibility modes.

A second pysyncobj consumer next to the cluster metadata (node/main.py
passes both to SyncObj), so schemas live in the same Raft log and survive
restarts and controller changes the same way. Only ``@replicated`` commands
change it; the controller (registry.py) validates a request and checks
compatibility before it submits one, and each command checks again what
may have changed since (limits, the subject's latest version), so every
node computes the same result.

Rules (Confluent Schema Registry's):

- a schema is stored once, as canonical JSON text (keys sorted, no
  spaces), under a global id; ids start at 1, and ``next_id`` only grows,
  so an id is never reused, not even after a permanent delete;
- the same text registered again under a subject returns its live
  version; a subject's version numbers only grow (``next_version``);
- a soft delete marks versions deleted: they stop being the latest, being
  listed, and counting as registered for broker-side enforcement, but
  their ids stay resolvable (records written with them can still be read);
  a permanent delete forgets the versions, and a schema no version refers
  to any more;
- bounds: MAX_SCHEMA_BYTES per schema, MAX_VERSIONS_PER_SUBJECT (soft
  deleted ones count, so delete-and-register cannot grow a subject for
  ever), MAX_SUBJECTS, MAX_REGISTRY_BYTES of schema text in all.

Thread-safety: pysyncobj applies commands on its own thread; every command
builds a new immutable ``Registry`` and swaps the one attribute, so the
asyncio loop reads a consistent snapshot at any time without a lock.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from pysyncobj import SyncObjConsumer, replicated
from pysyncobj import pickle as raft_pickle
from rill.client.errors import (
    SchemaNotFoundError,
    SchemaRegistryFullError,
    TooManySchemaVersionsError,
    TooManySubjectsError,
)
from rill.node.schema.compatibility import DEFAULT_MODE

MAX_SCHEMA_BYTES = 64 * 1024  # of canonical JSON text (UTF-8), so a command stays near one Raft message
MAX_VERSIONS_PER_SUBJECT = 1_000
MAX_SUBJECTS = 10_000
MAX_REGISTRY_BYTES = 32 * 1024 * 1024  # schema text in all: the Raft snapshot holds every schema
SUBJECT_CHANGED = -100  # not a wire code: the subject's latest version moved since the controller checked


@dataclass(frozen=True)
class VersionState:
    version: int
    schema_id: int
    deleted: bool = False


@dataclass(frozen=True)
class SubjectState:
    """One subject: its mode and its versions in order (soft-deleted ones too)."""

    name: str
    compatibility: str
    versions: tuple[VersionState, ...] = ()
    next_version: int = 1

    def live(self) -> tuple[VersionState, ...]:
        return tuple(entry for entry in self.versions if not entry.deleted)

    def latest(self) -> VersionState | None:
        """The newest version that is not deleted."""
        for entry in reversed(self.versions):
            if not entry.deleted:
                return entry
        return None

    def find(self, version: int) -> VersionState | None:
        """That version, if it exists and is not deleted."""
        for entry in self.versions:
            if entry.version == version and not entry.deleted:
                return entry
        return None

    def live_ids(self) -> frozenset[int]:
        return frozenset(entry.schema_id for entry in self.versions if not entry.deleted)


@dataclass(frozen=True)
class StoredSchema:
    """A schema's canonical text, and where it was first registered."""

    schema_id: int
    text: str
    subject: str
    version: int


@dataclass(frozen=True)
class Registry:
    """One consistent snapshot of the whole registry. Never changed once built."""

    subjects: Mapping[str, SubjectState] = field(default_factory=dict)
    schemas: Mapping[int, StoredSchema] = field(default_factory=dict)
    ids_by_digest: Mapping[str, int] = field(default_factory=dict)  # sha256 of the text -> id
    references: Mapping[int, int] = field(default_factory=dict)  # id -> versions (deleted too) that use it
    next_id: int = 1
    stored_bytes: int = 0

    def schema_id_of(self, text: str) -> int | None:
        return self.ids_by_digest.get(digest(text))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RegistryState(SyncObjConsumer):
    """The registry, changed only through replicated, idempotent commands; read ``registry``."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry()

    @replicated
    def register_schema(self, subject: str, text: str, compatibility: str | None,
                        expected_latest: int) -> tuple[int, int, int]:
        """Add ``text`` (canonical JSON) as the subject's next version; (error code, version, id).

        Registering the subject's live text again returns its version (and
        sets the mode if one is given). ``expected_latest`` is the latest
        version the controller checked compatibility against (0: none);
        if it moved, nothing changes and the code is SUBJECT_CHANGED.
        """
        registry = self.registry
        current = registry.subjects.get(subject)
        schema_id = registry.schema_id_of(text)
        if current is not None and schema_id is not None:
            existing = next((entry for entry in current.live() if entry.schema_id == schema_id), None)
            if existing is not None:
                if compatibility and compatibility != current.compatibility:
                    self._set_subject(replace(current, compatibility=compatibility))
                return 0, existing.version, schema_id
        latest = current.latest() if current is not None else None
        if (latest.version if latest is not None else 0) != expected_latest:
            return SUBJECT_CHANGED, 0, 0
        code = _registration_problem(registry, current, text, schema_id)
        if code:
            return code, 0, 0
        if current is None:
            current = SubjectState(subject, compatibility or DEFAULT_MODE)
        version = current.next_version
        if schema_id is None:
            schema_id = registry.next_id
            registry = replace(
                registry,
                schemas={**registry.schemas, schema_id: StoredSchema(schema_id, text, subject, version)},
                ids_by_digest={**registry.ids_by_digest, digest(text): schema_id},
                next_id=schema_id + 1,
                stored_bytes=registry.stored_bytes + len(text.encode()),
            )
        updated = replace(current, compatibility=compatibility or current.compatibility,
                          versions=(*current.versions, VersionState(version, schema_id)), next_version=version + 1)
        self.registry = replace(registry, subjects={**registry.subjects, subject: updated},
                                references={**registry.references,
                                            schema_id: registry.references.get(schema_id, 0) + 1})
        return 0, version, schema_id

    @replicated
    def set_compatibility(self, subject: str, compatibility: str) -> int:
        """Set a subject's mode (a subject without versions may hold one); 0 or an error code."""
        current = self.registry.subjects.get(subject)
        if current is None:
            if len(self.registry.subjects) >= MAX_SUBJECTS:
                return TooManySubjectsError.code
            current = SubjectState(subject, compatibility)
        self._set_subject(replace(current, compatibility=compatibility))
        return 0

    @replicated
    def delete_versions(self, subject: str, version: int | None, permanent: bool) -> tuple[int, tuple[int, ...]]:
        """Soft-delete (or, ``permanent``, forget) one version or all (``version`` None); (code, versions).

        A soft delete takes live versions only; a permanent one takes soft-deleted ones too. Nothing to
        delete is SchemaNotFound.
        """
        current = self.registry.subjects.get(subject)
        if current is None:
            return SchemaNotFoundError.code, ()
        chosen = [entry for entry in current.versions
                  if (version is None or entry.version == version) and (permanent or not entry.deleted)]
        if not chosen:
            return SchemaNotFoundError.code, ()
        if permanent:
            self._forget(current, chosen)
        else:
            numbers = {entry.version for entry in chosen}
            self._set_subject(replace(current, versions=tuple(
                replace(entry, deleted=True) if entry.version in numbers else entry for entry in current.versions)))
        return 0, tuple(entry.version for entry in chosen)

    def _set_subject(self, subject: SubjectState) -> None:
        self.registry = replace(self.registry, subjects={**self.registry.subjects, subject.name: subject})

    def _forget(self, current: SubjectState, chosen: list[VersionState]) -> None:
        """Drop versions for good; then schemas no version uses, and the subject if it has no version left
        (its mode goes with it). ``next_id`` stays: ids are never reused."""
        registry = self.registry
        numbers = {entry.version for entry in chosen}
        kept = tuple(entry for entry in current.versions if entry.version not in numbers)
        subjects = dict(registry.subjects)
        if kept:
            subjects[current.name] = replace(current, versions=kept)
        else:
            del subjects[current.name]
        references, schemas, ids_by_digest = dict(registry.references), dict(registry.schemas), dict(
            registry.ids_by_digest)
        freed = 0
        for entry in chosen:
            references[entry.schema_id] -= 1
            if references[entry.schema_id] == 0:
                del references[entry.schema_id]
                stored = schemas.pop(entry.schema_id)
                del ids_by_digest[digest(stored.text)]
                freed += len(stored.text.encode())
        self.registry = replace(registry, subjects=subjects, schemas=schemas, ids_by_digest=ids_by_digest,
                                references=references, stored_bytes=registry.stored_bytes - freed)


def _registration_problem(registry: Registry, current: SubjectState | None, text: str,
                          schema_id: int | None) -> int:
    """The error code of a limit a new version would pass, else 0."""
    if current is None and len(registry.subjects) >= MAX_SUBJECTS:
        return TooManySubjectsError.code
    if current is not None and len(current.versions) >= MAX_VERSIONS_PER_SUBJECT:
        return TooManySchemaVersionsError.code
    if schema_id is None and registry.stored_bytes + len(text.encode()) > MAX_REGISTRY_BYTES:
        return SchemaRegistryFullError.code
    return 0


def add_registry_to_raft_dump(dump_file: Path, consumers: int) -> bool:
    """Give a Raft snapshot written before the registry existed an (empty) slot for it; True if it did.

    pysyncobj stores one state per consumer in its snapshot and indexes them
    by position, so a snapshot with fewer than ``consumers`` would fail to
    load (and leave the metadata half loaded). Rewritten atomically, in
    pysyncobj's format (gzip of a pickle); a snapshot of the current layout is
    left alone.
    """
    if not dump_file.exists():
        return False
    with gzip.open(dump_file, "rb") as source:
        dump = raft_pickle.load(source)
    states = dump[0]
    if not isinstance(states, list) or len(states) >= consumers + 1:  # [SyncObj's own, consumer 1, ...]
        return False
    upgraded = (states + [{} for _ in range(consumers + 1 - len(states))], *dump[1:])
    temporary = dump_file.with_name(dump_file.name + ".upgrade")
    with open(temporary, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as target:
        raft_pickle.dump(upgraded, target)
    os.replace(temporary, dump_file)
    return True
