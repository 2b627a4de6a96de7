"""The schema registry's replicated commands (node/schema/registry_state.py), applied directly as Raft would.

Ids and versions, idempotent re-registration, the fence on the latest
version, soft and permanent deletes, every limit (made small here), and the
upgrade of a Raft snapshot written before the registry existed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from pysyncobj import pickle as raft_pickle
from rill.client.errors import (
    SchemaNotFoundError,
    SchemaRegistryFullError,
    TooManySchemaVersionsError,
    TooManySubjectsError,
)
from rill.node.schema import registry_state
from rill.node.schema.registry_state import SUBJECT_CHANGED, RegistryState, add_registry_to_raft_dump


def register(state: RegistryState, subject: str, text: str, expected_latest: int, mode: str | None = None):
    return state.register_schema(subject, text, mode, expected_latest, _doApply=True)


def delete(state: RegistryState, subject: str, version: int | None = None, permanent: bool = False):
    return state.delete_versions(subject, version, permanent, _doApply=True)


def test_ids_are_global_and_versions_per_subject():
    state = RegistryState()
    assert register(state, "a", '{"type":"string"}', 0) == (0, 1, 1)
    assert register(state, "a", '{"type":"integer"}', 1) == (0, 2, 2)
    assert register(state, "b", '{"type":"string"}', 0) == (0, 1, 1), "the same text has one id everywhere"
    assert register(state, "a", '{"type":"string"}', 2) == (0, 1, 1), "a live text returns its version"
    subject = state.registry.subjects["a"]
    assert (subject.compatibility, subject.latest().version, sorted(subject.live_ids())) == ("BACKWARD", 2, [1, 2])


def test_a_moved_latest_version_refuses_the_registration():
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0)
    assert register(state, "a", '{"type":"integer"}', 0) == (SUBJECT_CHANGED, 0, 0)
    assert state.registry.subjects["a"].latest().version == 1


def test_mode_is_set_at_first_registration_and_changed_by_a_later_one():
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0, mode="FULL")
    assert state.registry.subjects["a"].compatibility == "FULL"
    register(state, "a", '{"type":"string"}', 1, mode="NONE")
    assert state.registry.subjects["a"].compatibility == "NONE"
    assert state.set_compatibility("b", "FORWARD", _doApply=True) == 0
    assert state.registry.subjects["b"].latest() is None


def test_soft_delete_keeps_the_schema_and_never_reuses_version_numbers():
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0)
    register(state, "a", '{"type":"integer"}', 1)
    assert delete(state, "a", 2) == (0, (2,))
    assert delete(state, "a", 2) == (SchemaNotFoundError.code, ())
    assert state.registry.subjects["a"].latest().version == 1
    assert 2 in state.registry.schemas
    assert register(state, "a", '{"type":"integer"}', 1) == (0, 3, 2)


def test_permanent_delete_frees_the_schema_but_not_its_id():
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0)
    register(state, "b", '{"type":"string"}', 0)
    assert delete(state, "a", permanent=True) == (0, (1,))
    assert "a" not in state.registry.subjects
    assert 1 in state.registry.schemas, "subject b still uses it"
    delete(state, "b")
    assert delete(state, "b", permanent=True) == (0, (1,)), "permanent takes soft-deleted versions too"
    assert state.registry.schemas == {} and state.registry.stored_bytes == 0
    assert register(state, "a", '{"type":"string"}', 0) == (0, 1, 2)


def test_too_many_versions(monkeypatch):
    monkeypatch.setattr(registry_state, "MAX_VERSIONS_PER_SUBJECT", 2)
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0)
    register(state, "a", '{"type":"integer"}', 1)
    delete(state, "a", 2)
    assert register(state, "a", '{"type":"number"}', 1)[0] == TooManySchemaVersionsError.code, "deleted ones count"
    delete(state, "a", 2, permanent=True)
    assert register(state, "a", '{"type":"number"}', 1) == (0, 3, 3)


def test_too_many_subjects(monkeypatch):
    monkeypatch.setattr(registry_state, "MAX_SUBJECTS", 2)
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0)
    state.set_compatibility("b", "NONE", _doApply=True)
    assert register(state, "c", '{"type":"string"}', 0)[0] == TooManySubjectsError.code
    assert state.set_compatibility("c", "NONE", _doApply=True) == TooManySubjectsError.code
    assert register(state, "a", '{"type":"integer"}', 1)[0] == 0


def test_registry_bytes_are_bounded(monkeypatch):
    monkeypatch.setattr(registry_state, "MAX_REGISTRY_BYTES", 40)
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0)  # 17 bytes
    register(state, "b", '{"type":"integer"}', 0)  # 18 bytes
    assert register(state, "c", '{"type":"boolean"}', 0)[0] == SchemaRegistryFullError.code
    assert register(state, "c", '{"type":"string"}', 0)[0] == 0, "a stored text costs nothing more"


def test_a_snapshot_from_before_the_registry_gets_a_slot(tmp_path: Path):
    dump = tmp_path / "raft.dump"
    old = ([{"own": 1}, {"topics": {"t": 1}}], ("entry", 5, 1), ("entry", 4, 1), {"node:1"})
    with gzip.open(dump, "wb") as target:
        raft_pickle.dump(old, target)
    assert add_registry_to_raft_dump(dump, consumers=2)
    with gzip.open(dump, "rb") as source:
        upgraded = raft_pickle.load(source)
    assert upgraded == ([{"own": 1}, {"topics": {"t": 1}}, {}], *old[1:])
    assert not add_registry_to_raft_dump(dump, consumers=2), "the current layout is left alone"
    assert not add_registry_to_raft_dump(tmp_path / "missing", consumers=2)


@pytest.mark.parametrize("version", [None, 1])
def test_deleting_from_an_unknown_subject(version):
    assert delete(RegistryState(), "nope", version) == (SchemaNotFoundError.code, ())


def test_the_state_round_trips_through_a_raft_snapshot():
    state = RegistryState()
    register(state, "a", '{"type":"string"}', 0, mode="FULL")
    register(state, "a", '{"type":"integer"}', 1)
    delete(state, "a", 1)
    restored = RegistryState()
    restored._deserialize(raft_pickle.loads(raft_pickle.dumps(state._serialize())))  # what pysyncobj stores
    assert restored.registry == state.registry
    assert register(restored, "a", '{"type":"number"}', 2) == (0, 3, 3)
