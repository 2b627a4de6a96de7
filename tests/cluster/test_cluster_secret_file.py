"""``rill cluster up`` gives its nodes a cluster secret: a private file in the data dir, which they all read."""

from __future__ import annotations

import stat
from contextlib import contextmanager
from pathlib import Path

from rill.node.cluster_secret import SECRET_FILE_NAME, ClusterSecret
from test_cluster_processes import start_cluster


def test_cluster_up_writes_a_private_secret_the_nodes_share(tmp_path: Path) -> None:
    """Two nodes form a cluster only if both hold the same secret (Raft and the inter-broker port need it)."""
    with contextmanager(start_cluster)(tmp_path / "data", node_count=2) as cluster:
        secret_file = cluster.data_dir / SECRET_FILE_NAME
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        ClusterSecret(secret_file.read_text().strip())  # long enough, no padding
        rows, _ = cluster.status()
        assert [rows[node_id]["answers"] for node_id in (1, 2)] == ["yes", "yes"], rows
