"""The cluster secret: one random value that every broker of a cluster holds, and nobody else.

The brokers' credentials for each other derive from it, each as
HMAC-SHA256(secret, label) so that the uses are independent:

- the password pysyncobj encrypts and authenticates Raft traffic with
  (Fernet), so a connection to the Raft port that does not know it is
  dropped before anything it sent is unpickled;
- the CURVE key pairs of the inter-broker listener (internal_listener.py):
  brokers connect with the client pair, the listener accepts only that
  public key and proves itself with the server pair.

A broker takes the first of: ``cluster_secret`` in its config, the
environment variable RILL_CLUSTER_SECRET, the file
``<data_dir>/cluster.secret`` (``rill cluster up`` writes it, mode 0600).
A one-node cluster without any creates that file; a larger one refuses to
start, because nodes that each made up their own secret could never talk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import zmq
from rill.client.errors import InvalidConfigError
from zmq.utils import z85

SECRET_FILE_NAME = "cluster.secret"
ENVIRONMENT_VARIABLE = "RILL_CLUSTER_SECRET"
SECRET_LENGTH_MIN = 32
GENERATED_SECRET_BYTES = 32


@dataclass(frozen=True)
class CurveKeyPair:
    """A CURVE key pair, both keys Z85-encoded (40 bytes each), as ZeroMQ's socket options take them."""

    public: bytes
    secret: bytes = b""

    def __repr__(self) -> str:
        return f"CurveKeyPair(public={self.public!r})"


@dataclass(frozen=True)
class ClusterSecret:
    """The cluster secret and what derives from it. Never printed: ``repr`` hides the value."""

    value: str

    def __post_init__(self) -> None:
        if len(self.value) < SECRET_LENGTH_MIN or self.value != self.value.strip() or "\n" in self.value:
            raise InvalidConfigError(f"the cluster secret must be at least {SECRET_LENGTH_MIN} characters without "
                                     f"spaces around it (rill cluster up makes one of {2 * GENERATED_SECRET_BYTES})")

    def __repr__(self) -> str:
        return "ClusterSecret(<hidden>)"

    @property
    def raft_password(self) -> str:
        """pysyncobj's ``password``: it derives a Fernet key from it and encrypts every Raft message."""
        return self._derive(b"rill raft password v1").hex()

    @property
    def server_keys(self) -> CurveKeyPair:
        """The key pair every broker's inter-broker listener serves with."""
        return self._curve_keys(b"rill curve server v1")

    @property
    def client_keys(self) -> CurveKeyPair:
        """The key pair brokers connect to each other's inter-broker listeners with."""
        return self._curve_keys(b"rill curve client v1")

    def _derive(self, label: bytes) -> bytes:
        return hmac.digest(self.value.encode(), label, hashlib.sha256)

    def _curve_keys(self, label: bytes) -> CurveKeyPair:
        # Any 32 bytes are a Curve25519 secret key (the curve clamps them), so a PRF output is one.
        secret = z85.encode(self._derive(label))
        return CurveKeyPair(zmq.curve_public(secret), secret)


def generate_secret() -> str:
    """A new random cluster secret: 32 bytes from the OS's generator, hex-encoded."""
    return secrets.token_hex(GENERATED_SECRET_BYTES)


def secret_file(data_dir: Path) -> Path:
    return Path(data_dir) / SECRET_FILE_NAME


def ensure_secret_file(data_dir: Path) -> Path:
    """The cluster's secret file in ``data_dir``, created with a new secret (mode 0600) if missing.

    Safe when several processes call it at once: the file appears complete
    (written under a temporary name, then hard-linked into place) and the
    first one wins; the others keep what it wrote.
    """
    path = secret_file(data_dir)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{SECRET_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as output:
            output.write(generate_secret() + "\n")
            output.flush()
            os.fsync(output.fileno())
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass
    finally:
        scratch.unlink(missing_ok=True)
    return path


def read_secret_file(path: Path) -> ClusterSecret:
    """The secret in ``path``; refused if others than its owner may read it (as ssh refuses such keys)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as error:
        raise InvalidConfigError(f"cannot read the cluster secret {path}: {error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidConfigError(f"the cluster secret {path} is readable by other users "
                                 f"(mode {stat.S_IMODE(mode):o}); make it private: chmod 600 {path}")
    return ClusterSecret(text.strip())


def find_cluster_secret(configured: str | None, data_dir: Path, node_count: int,
                        environment: Mapping[str, str] | None = None) -> ClusterSecret:
    """The secret a broker uses: from its config, else the environment, else ``<data_dir>/cluster.secret``.

    A one-node cluster creates the file when there is none; a larger one
    must be given the secret, the same on every node.
    """
    environment = os.environ if environment is None else environment
    if configured:
        return ClusterSecret(configured)
    if environment.get(ENVIRONMENT_VARIABLE):
        return ClusterSecret(environment[ENVIRONMENT_VARIABLE])
    path = secret_file(data_dir)
    if not path.exists():
        if node_count > 1:
            raise InvalidConfigError(
                f"no cluster secret: the {node_count} nodes need the same one, as cluster_secret in each "
                f"node's config, in {ENVIRONMENT_VARIABLE}, or in {path} (rill cluster up writes that file; "
                f"copy it to every machine with mode 600)")
        ensure_secret_file(data_dir)
    return read_secret_file(path)
