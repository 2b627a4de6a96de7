"""The cluster secret (node/cluster_secret.py): where a broker finds it, how its file is made and guarded,
and that the credentials derived from it are stable, distinct and never printed."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zmq
from rill.client.errors import InvalidConfigError
from rill.node.cluster_secret import (
    ENVIRONMENT_VARIABLE,
    SECRET_FILE_NAME,
    ClusterSecret,
    ensure_secret_file,
    find_cluster_secret,
    generate_secret,
)

SECRET = "a" * 64
OTHER = "b" * 64


def test_derived_credentials_are_stable_and_independent() -> None:
    secret, again, other = ClusterSecret(SECRET), ClusterSecret(SECRET), ClusterSecret(OTHER)
    assert secret.raft_password == again.raft_password != other.raft_password
    assert secret.server_keys == again.server_keys and secret.client_keys == again.client_keys
    assert secret.server_keys.public != secret.client_keys.public
    assert secret.client_keys.public != other.client_keys.public
    assert SECRET not in secret.raft_password, "the password is derived, not the secret itself"
    for pair in (secret.server_keys, secret.client_keys):
        assert len(pair.public) == len(pair.secret) == 40
        assert zmq.curve_public(pair.secret) == pair.public


def test_secret_never_printed() -> None:
    secret = ClusterSecret(SECRET)
    assert SECRET not in repr(secret) and SECRET not in str(secret)
    assert secret.client_keys.secret.decode() not in repr(secret.client_keys)


@pytest.mark.parametrize("value", ["short", " " + SECRET, SECRET + "\n", ""])
def test_weak_or_padded_secret_refused(value: str) -> None:
    with pytest.raises(InvalidConfigError, match="at least 32 characters"):
        ClusterSecret(value)


def test_generated_secrets_are_random_and_long() -> None:
    secrets = {generate_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(secret) == 64 and int(secret, 16) >= 0 for secret in secrets)


def test_secret_file_is_private_and_kept(tmp_path: Path) -> None:
    path = ensure_secret_file(tmp_path / "cluster")
    assert path == tmp_path / "cluster" / SECRET_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert ensure_secret_file(tmp_path / "cluster").read_text() == first, "an existing secret is never replaced"
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE_NAME], "no scratch file is left behind"


def test_secret_file_created_once_when_raced(tmp_path: Path) -> None:
    """Nodes of one local cluster may start together: all of them must end up with the same secret."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(lambda _: ensure_secret_file(tmp_path), range(32)))
    assert len({path.read_text() for path in paths}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE_NAME]


def test_where_the_secret_comes_from(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE_NAME).write_text("f" * 64 + "\n")
    os.chmod(tmp_path / SECRET_FILE_NAME, 0o600)
    environment = {ENVIRONMENT_VARIABLE: "e" * 64}
    assert find_cluster_secret("c" * 64, tmp_path, 3, environment).value == "c" * 64, "config first"
    assert find_cluster_secret(None, tmp_path, 3, environment).value == "e" * 64, "then the environment"
    assert find_cluster_secret(None, tmp_path, 3, {}).value == "f" * 64, "then the data dir's file"


def test_one_node_cluster_makes_its_own_secret(tmp_path: Path) -> None:
    secret = find_cluster_secret(None, tmp_path, 1, {})
    assert (tmp_path / SECRET_FILE_NAME).read_text().strip() == secret.value
    assert find_cluster_secret(None, tmp_path, 1, {}) == secret, "and keeps it across restarts"


def test_larger_cluster_without_secret_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="no cluster secret") as refusal:
        find_cluster_secret(None, tmp_path, 3, {})
    assert ENVIRONMENT_VARIABLE in str(refusal.value) and "cluster_secret" in str(refusal.value)
    assert not (tmp_path / SECRET_FILE_NAME).exists(), "nodes that each made one up could never talk"


def test_secret_file_readable_by_others_refused(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE_NAME
    path.write_text(SECRET)
    os.chmod(path, 0o644)
    with pytest.raises(InvalidConfigError, match="chmod 600"):
        find_cluster_secret(None, tmp_path, 3, {})
