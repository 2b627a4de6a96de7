"""A broker's own configuration: who it is, where its data lives, who its peers are.

Loaded from a TOML file (``rill node --config node.toml``) or built from
flags; flags override the file. Example::

    cluster_id = "rill-local"
    node_id = 1
    data_dir = "./data"
    [[nodes]]
    id = 1
    host = "127.0.0.1"
    port = 9092        # ZeroMQ: clients and brokers
    raft_port = 9192
    http_port = 9292
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rill.client.errors import InvalidConfigError

RAFT_PORT_OFFSET = 100
HTTP_PORT_OFFSET = 200


@dataclass(frozen=True)
class NodeAddress:
    """Where one node of the cluster listens."""

    node_id: int
    host: str
    port: int
    raft_port: int
    http_port: int


@dataclass(frozen=True)
class NodeConfig:
    """Everything a broker process needs to start. ``validate`` says what is wrong, all at once."""

    node_id: int
    data_dir: Path
    nodes: tuple[NodeAddress, ...]
    cluster_id: str = "rill-local"
    retention_check_interval_ms: int = 5_000
    flush_check_interval_ms: int = 1_000
    heartbeat_interval_ms: int = 200
    session_timeout_ms: int = 1_000
    replica_lag_time_max_ms: int = 10_000
    controlled_shutdown_timeout_ms: int = 15_000
    auto_leader_rebalance: bool = True
    max_request_bytes: int = 104_857_600
    offsets_topic_segment_bytes: int = 16_777_216  # Kafka's offsets.topic.segment.bytes (there 100 MiB)
    topic_defaults: dict[str, str] = field(default_factory=dict)

    @property
    def me(self) -> NodeAddress:
        return next(node for node in self.nodes if node.node_id == self.node_id)

    @property
    def node_data_dir(self) -> Path:
        """This node's own folder: ``<data-dir>/<node-id>``."""
        return self.data_dir / str(self.node_id)

    def validate(self) -> "NodeConfig":
        problems = []
        ids = [node.node_id for node in self.nodes]
        if len(ids) != len(set(ids)):
            problems.append(f"duplicate node ids in the node list: {sorted(ids)}")
        if self.node_id not in ids:
            problems.append(f"node id {self.node_id} is not in the node list {sorted(ids)}")
        ports = [port for node in self.nodes for port in (node.port, node.raft_port, node.http_port)
                 if node.host in ("127.0.0.1", "localhost")]
        if len(ports) != len(set(ports)):
            problems.append("two nodes on this host share a port")
        for node in self.nodes:
            for port in (node.port, node.raft_port, node.http_port):
                if not 0 < port < 65536:
                    problems.append(f"node {node.node_id}: port {port} is out of range")
        if not 0 < self.heartbeat_interval_ms * 2 <= self.session_timeout_ms:
            problems.append(f"session_timeout_ms ({self.session_timeout_ms}) must be at least twice "
                            f"heartbeat_interval_ms ({self.heartbeat_interval_ms})")
        if self.offsets_topic_segment_bytes < 1024:
            problems.append(f"offsets_topic_segment_bytes must be at least 1024, got "
                            f"{self.offsets_topic_segment_bytes}")
        if problems:
            raise InvalidConfigError("; ".join(problems))
        return self


def local_nodes(count: int, base_port: int, host: str = "127.0.0.1") -> tuple[NodeAddress, ...]:
    """The node list of a local cluster (docs/architecture.md, 3)."""
    return tuple(
        NodeAddress(i, host, base_port + i - 1, base_port + RAFT_PORT_OFFSET + i - 1,
                    base_port + HTTP_PORT_OFFSET + i - 1)
        for i in range(1, count + 1)
    )


def load_node_config(path: Path | None, overrides: dict[str, Any]) -> NodeConfig:
    """A config from a TOML file (optional) with flag overrides applied on top."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InvalidConfigError(f"cannot read node config {path}: {error}") from None
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        nodes = tuple(
            NodeAddress(int(n["id"]), str(n.get("host", "127.0.0.1")), int(n["port"]),
                        int(n.get("raft_port", int(n["port"]) + RAFT_PORT_OFFSET)),
                        int(n.get("http_port", int(n["port"]) + HTTP_PORT_OFFSET)))
            for n in values.get("nodes", [])
        )
        if not nodes:
            nodes = local_nodes(int(values.get("node_count", 1)), int(values.get("base_port", 9092)))
        config = NodeConfig(
            node_id=int(values["node_id"]),
            data_dir=Path(values.get("data_dir", "./data")),
            nodes=nodes,
            cluster_id=str(values.get("cluster_id", "rill-local")),
            retention_check_interval_ms=int(values.get("retention_check_interval_ms", 5_000)),
            heartbeat_interval_ms=int(values.get("heartbeat_interval_ms", 200)),
            session_timeout_ms=int(values.get("session_timeout_ms", 1_000)),
            replica_lag_time_max_ms=int(values.get("replica_lag_time_max_ms", 10_000)),
            controlled_shutdown_timeout_ms=int(values.get("controlled_shutdown_timeout_ms", 15_000)),
            auto_leader_rebalance=bool(values.get("auto_leader_rebalance", True)),
            offsets_topic_segment_bytes=int(values.get("offsets_topic_segment_bytes", 16_777_216)),
            topic_defaults={str(k): str(v) for k, v in values.get("topic_defaults", {}).items()},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidConfigError(f"bad node config: {error!r}") from None
    return config.validate()

