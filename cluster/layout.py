"""Where a local cluster's files live and how its nodes' ports are laid out.

``rill cluster up`` records the layout in ``<data-dir>/cluster.toml`` so that
``down``, ``status``, ``kill`` and ``start`` find the same nodes later::

    # written by rill cluster up
    node_count = 3
    base_port = 9092

Beside it each node has ``node-<id>.pid`` (the pid of its process, while it
runs) and ``node-<id>.log`` (its stdout and stderr, appended across starts).
Ports follow docs/architecture.md, section 3: node i listens on B+i-1 (ZeroMQ),
B+100+i-1 (Raft), B+200+i-1 (HTTP) and B+400+i-1 (inter-broker). ``cluster.secret``
beside them (mode 0600) holds the secret the nodes authenticate each other with.
"""

from __future__ import annotations

import random
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from rill.node.config import (
    HTTP_PORT_OFFSET,
    INTERNAL_PORT_OFFSET,
    RAFT_PORT_OFFSET,
    NodeAddress,
    local_nodes,
)

LAYOUT_FILE_NAME = "cluster.toml"
LOCAL_HOST = "127.0.0.1"


class ClusterError(Exception):
    """A local cluster operation cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class ClusterLayout:
    """A local cluster: its data dir (absolute), how many nodes, and the first node's port."""

    data_dir: Path
    node_count: int
    base_port: int

    @property
    def node_ids(self) -> range:
        return range(1, self.node_count + 1)

    @property
    def nodes(self) -> tuple[NodeAddress, ...]:
        return local_nodes(self.node_count, self.base_port, LOCAL_HOST)

    @property
    def bootstrap(self) -> str:
        """The client bootstrap list, every node: ``127.0.0.1:9092,127.0.0.1:9093``."""
        return ",".join(f"{node.host}:{node.port}" for node in self.nodes)

    def check_node_id(self, node_id: int) -> None:
        """ClusterError if the cluster has no node with this id."""
        if node_id not in self.node_ids:
            raise ClusterError(f"the cluster in {self.data_dir} has nodes 1 to {self.node_count}, not {node_id}")

    def node(self, node_id: int) -> NodeAddress:
        """The addresses of one node; ClusterError if the cluster has no such node."""
        self.check_node_id(node_id)
        return self.nodes[node_id - 1]

    def pid_file(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}.pid"

    def log_file(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}.log"

    def node_data_dir(self, node_id: int) -> Path:
        """The node's own storage folder, as the broker names it: ``<data-dir>/<node-id>``."""
        return self.data_dir / str(node_id)


def layout_file(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / LAYOUT_FILE_NAME


def read_layout(data_dir: Path) -> ClusterLayout:
    """The layout recorded in ``data_dir``; ClusterError if there is none or it is unreadable."""
    path = layout_file(data_dir)
    try:
        values = tomllib.loads(path.read_text())
        return ClusterLayout(path.parent, int(values["node_count"]), int(values["base_port"]))
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {path.parent} (no {LAYOUT_FILE_NAME}); "
                           "start one with: rill cluster up") from None
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
        raise ClusterError(f"cannot read {path}: {error}") from None


def write_layout(layout: ClusterLayout) -> None:
    """Record the layout in its data dir, creating the folder if needed."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    (layout.data_dir / LAYOUT_FILE_NAME).write_text(
        "# written by rill cluster up; read by rill cluster down, status, kill and start\n"
        f"node_count = {layout.node_count}\n"
        f"base_port = {layout.base_port}\n"
    )


def plan_layout(data_dir: Path, node_count: int | None, base_port: int | None,
                default_node_count: int, default_base_port: int) -> ClusterLayout:
    """The layout to start: the recorded one if any (flags must then agree with it), else flags or defaults.

    A data dir keeps its layout because its Raft journals name the members:
    restarting the same data with another node count or ports would not form a cluster.
    """
    if not layout_file(data_dir).exists():
        layout = ClusterLayout(Path(data_dir).resolve(),
                               default_node_count if node_count is None else node_count,
                               default_base_port if base_port is None else base_port)
        return check_ports(layout)
    recorded = read_layout(data_dir)
    if node_count not in (None, recorded.node_count) or base_port not in (None, recorded.base_port):
        raise ClusterError(
            f"{recorded.data_dir} holds a cluster of {recorded.node_count} node(s) on base port "
            f"{recorded.base_port}; start it with those values, or remove the data dir first (make clean)")
    return recorded


def check_ports(layout: ClusterLayout) -> ClusterLayout:
    """The layout itself if it has a node and every port of every node is a valid TCP port, else ClusterError."""
    if layout.node_count < 1:
        raise ClusterError("a cluster needs at least one node")
    highest_port = max(layout.nodes[-1].http_port, layout.nodes[-1].internal_port)
    if layout.base_port < 1 or highest_port > 65535:
        raise ClusterError(f"{layout.node_count} node(s) from base port {layout.base_port} need ports "
                          f"{layout.base_port} to {highest_port}; choose ports within 1-65535")
    return layout


# Ports picked for listening lie below Linux's default ephemeral range (32768-60999): a port in it can be
# taken at any moment as the source port of an outgoing connection, and a connection to a port in it that
# nobody listens on yet can connect to itself (TCP simultaneous open), so a restarting broker would find
# its port taken by its own peers' reconnect attempts.
FREE_PORT_RANGE = (20_000, 32_000)


def free_base_port(node_count: int, attempts: int = 200) -> int:
    """A base port whose client, Raft, HTTP and inter-broker ports are all free for ``node_count`` nodes now."""
    for _ in range(attempts):
        base_port = random.randint(FREE_PORT_RANGE[0], FREE_PORT_RANGE[1] - INTERNAL_PORT_OFFSET - node_count)
        ports = [base_port + offset + index
                 for offset in (0, RAFT_PORT_OFFSET, HTTP_PORT_OFFSET, INTERNAL_PORT_OFFSET)
                 for index in range(node_count)]
        if all(_port_is_free(port) for port in ports):
            return base_port
    raise ClusterError(f"no free base port found in {attempts} attempts")


def free_ports(count: int, attempts: int = 1_000) -> list[int]:
    """``count`` distinct ports in FREE_PORT_RANGE that are free right now."""
    ports: list[int] = []
    for _ in range(attempts):
        port = random.randint(*FREE_PORT_RANGE)
        if port not in ports and _port_is_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterError(f"no {count} free ports found in {attempts} attempts")


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOCAL_HOST, port))
        except OSError:
            return False
    return True
