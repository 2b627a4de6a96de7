"""A broker's own configuration: who it is, where its data lives, who its peers are.

Loaded from a TOML file (``rill node --config node.toml``) or built from
flags; flags override the file. Every NodeConfig field is a key of the
file; a key that is not, or a value of the wrong type (the string "false"
for a boolean), is refused with a message naming the key. Example::

    cluster_id = "rill-local"
    node_id = 1
    data_dir = "./data"
    [[nodes]]
    id = 1
    host = "127.0.0.1"
    port = 9092        # ZeroMQ: clients
    raft_port = 9192
    http_port = 9292
    internal_port = 9492   # ZeroMQ CURVE: brokers only (cluster_secret.py)
    [topic_defaults]       # Kafka's topic settings, under each new topic's own
    "retention.ms" = 86400000

Without ``[[nodes]]``, ``node_count`` and ``base_port`` describe a local
cluster (local_nodes).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, get_type_hints

import msgspec
from rill.client.errors import InvalidConfigError
from rill.node.metadata.naming_policy import NamingPolicy
from rill.node.metadata.topic_config import did_you_mean, setting_text, validate_topic_config
from rill.node.network.slow_requests import DEFAULT_SLOW_REQUEST_MS
from rill.node.structured_logging import LOG_FORMATS, LOG_LEVELS

RAFT_PORT_OFFSET = 100
HTTP_PORT_OFFSET = 200
INTERNAL_PORT_OFFSET = 400
# The ports of a [[nodes]] entry that default to its ``port`` plus an offset.
PORT_OFFSETS = {"raft_port": RAFT_PORT_OFFSET, "http_port": HTTP_PORT_OFFSET, "internal_port": INTERNAL_PORT_OFFSET}
INT32_MAX = 2**31 - 1
MIN_REQUEST_BYTES = 1024
# Intervals and timeouts that must be positive (an interval of 0 would spin the broker's loop).
POSITIVE_MS_SETTINGS = ("retention_check_interval_ms", "flush_check_interval_ms", "heartbeat_interval_ms",
                        "session_timeout_ms", "replica_lag_time_max_ms", "producer_id_expiration_ms",
                        "producer_id_expiration_check_interval_ms", "slow_request_ms", "group_stalled_after_ms")
# Limits on what clients can make a broker hold: each at least 1.
POSITIVE_LIMITS = ("max_parked_requests_per_connection", "max_parked_requests", "max_pending_acks_per_partition",
                   "max_fetch_wait_ms", "max_produce_timeout_ms", "fetch_max_bytes", "max_groups", "group_max_size",
                   "offset_metadata_max_bytes", "max_subscription_pattern_length", "max_producers_per_partition")


@dataclass(frozen=True)
class NodeAddress:
    """Where one node of the cluster listens."""

    node_id: int
    host: str
    port: int
    raft_port: int
    http_port: int
    internal_port: int


@dataclass(frozen=True)
class NodeConfig:
    """Everything a broker process needs to start. ``validate`` says what is wrong, all at once.

    ``testing_drop_produce_responses`` is for tests only: the fraction (0..1)
    of produce requests expecting an answer (acks 1 or all) that the broker
    appends as usual but leaves unanswered, picked at random, so that a test
    sees the client time out and retry; a broker logs a warning at start when
    it is set.
    """

    node_id: int
    data_dir: Path
    nodes: tuple[NodeAddress, ...]
    cluster_id: str = "rill-local"
    retention_check_interval_ms: int = 5_000
    flush_check_interval_ms: int = 1_000
    heartbeat_interval_ms: int = 200
    session_timeout_ms: int = 3_000  # longer than a 2 s stall; a dead process is fenced at once (liveness.py)
    replica_lag_time_max_ms: int = 10_000
    controlled_shutdown_timeout_ms: int = 15_000
    auto_leader_rebalance: bool = True
    max_request_bytes: int = 104_857_600
    offsets_topic_segment_bytes: int = 16_777_216  # Kafka's offsets.topic.segment.bytes (there 100 MiB)
    # Bounds on what clients can make the broker hold; more is refused with a typed error.
    max_parked_requests_per_connection: int = 100  # requests waiting for an answer (long polls, acks=all, ...)
    max_parked_requests: int = 10_000  # the same, over all client connections
    max_pending_acks_per_partition: int = 10_000  # unconfirmed acks=all writes to one partition
    max_fetch_wait_ms: int = 60_000  # a fetch's max_wait_ms is cut to this
    max_produce_timeout_ms: int = 60_000  # an acks=all produce's timeout_ms is cut to this
    fetch_max_bytes: int = 57_671_680  # Kafka's fetch.max.bytes: a fetch's max_bytes is cut to this
    max_groups: int = 100_000  # consumer groups one coordinator holds (with members or committed offsets)
    group_max_size: int = 1_000  # Kafka's group.max.size: members of one group
    offset_metadata_max_bytes: int = 4_096  # Kafka's offset.metadata.max.bytes
    max_subscription_pattern_length: int = 1_000  # characters of a group member's subscription regex
    # A group's lag state is STALLED when a partition had lag and the same committed offset for this long, and
    # CATCHING_UP when its oldest uncommitted record is this old (node/coordinator/lag.py); keep it above the
    # consumers' commit interval.
    group_stalled_after_ms: int = 10_000
    # Idempotent producers: a producer's state on a partition goes after this long without a batch (Kafka's
    # producer.id.expiration.ms), checked this often; past the cap the least recently written one goes.
    producer_id_expiration_ms: int = 86_400_000
    producer_id_expiration_check_interval_ms: int = 600_000  # Kafka's producer.id.expiration.check.interval.ms
    max_producers_per_partition: int = 10_000
    testing_drop_produce_responses: float = 0.0  # for tests only: see the class docstring
    topic_naming_policy: str = ""  # a regex every new topic name must match (naming_policy.py); "" for none
    # The broker's log (structured_logging.py): lines from this level up, as "text" or "json"; a request
    # that takes longer than slow_request_ms is logged as a slow_request warning (network/server.py).
    log_level: str = "INFO"
    log_format: str = "text"
    slow_request_ms: int = DEFAULT_SLOW_REQUEST_MS
    topic_defaults: dict[str, str] = field(default_factory=dict)
    cluster_secret: str | None = field(default=None, repr=False)  # else the env or data dir: cluster_secret.py

    @property
    def me(self) -> NodeAddress:
        return next(node for node in self.nodes if node.node_id == self.node_id)

    @property
    def node_data_dir(self) -> Path:
        """This node's own folder: ``<data-dir>/<node-id>``."""
        return self.data_dir / str(self.node_id)

    def describe(self) -> str:
        """Every setting as ``key=value``, for the log; fields declared ``repr=False`` (secrets) are hidden."""
        return ", ".join(
            f"{item.name}={'<hidden>' if not item.repr and getattr(self, item.name) else getattr(self, item.name)!r}"
            for item in dataclasses.fields(self))

    def validate(self) -> "NodeConfig":
        problems = self._range_problems()
        ids = [node.node_id for node in self.nodes]
        if len(ids) != len(set(ids)):
            problems.append(f"duplicate node ids in the node list: {sorted(ids)}")
        if self.node_id not in ids:
            problems.append(f"node id {self.node_id} is not in the node list {sorted(ids)}")
        ports = [port for node in self.nodes
                 for port in (node.port, node.raft_port, node.http_port, node.internal_port)
                 if node.host in ("127.0.0.1", "localhost")]
        if len(ports) != len(set(ports)):
            problems.append("two nodes on this host share a port")
        for node in self.nodes:
            for port in (node.port, node.raft_port, node.http_port, node.internal_port):
                if not 0 < port < 65536:
                    problems.append(f"node {node.node_id}: port {port} is out of range")
        if not 0 < self.heartbeat_interval_ms * 2 <= self.session_timeout_ms:
            problems.append(f"session_timeout_ms ({self.session_timeout_ms}) must be at least twice "
                            f"heartbeat_interval_ms ({self.heartbeat_interval_ms})")
        if self.offsets_topic_segment_bytes < 1024:
            problems.append(f"offsets_topic_segment_bytes must be at least 1024, got "
                            f"{self.offsets_topic_segment_bytes}")
        problems += self._topic_problems()
        try:
            NamingPolicy(self.topic_naming_policy)
        except InvalidConfigError as error:
            problems.append(str(error))
        if problems:
            raise InvalidConfigError("; ".join(problems))
        return self

    def _range_problems(self) -> list[str]:
        problems = [f"{name} must be from 1 to {INT32_MAX} ms, got {getattr(self, name)}"
                    for name in POSITIVE_MS_SETTINGS if not 1 <= getattr(self, name) <= INT32_MAX]
        problems += [f"{name} must be from 1 to {INT32_MAX}, got {getattr(self, name)}"
                     for name in POSITIVE_LIMITS if not 1 <= getattr(self, name) <= INT32_MAX]
        if not 0 <= self.controlled_shutdown_timeout_ms <= INT32_MAX:
            problems.append(f"controlled_shutdown_timeout_ms must be from 0 to {INT32_MAX} ms, "
                            f"got {self.controlled_shutdown_timeout_ms}")
        if not MIN_REQUEST_BYTES <= self.max_request_bytes <= INT32_MAX:
            problems.append(f"max_request_bytes must be from {MIN_REQUEST_BYTES} to {INT32_MAX}, "
                            f"got {self.max_request_bytes}")
        if not 0.0 <= self.testing_drop_produce_responses <= 1.0:
            problems.append(f"testing_drop_produce_responses must be from 0 to 1, "
                            f"got {self.testing_drop_produce_responses}")
        if not self.cluster_id:
            problems.append("cluster_id must not be empty")
        if self.log_level.upper() not in LOG_LEVELS:
            problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            problems.append(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        return problems

    def _topic_problems(self) -> list[str]:
        """topic_defaults, and the offsets topic's segment size, checked as the controller checks a new
        topic's config: a bad default would otherwise fail every CreateTopic."""
        try:
            validate_topic_config({}, self.topic_defaults)
        except InvalidConfigError as error:
            return [f"topic_defaults: {error}"]
        try:
            validate_topic_config({"segment.bytes": self.offsets_topic_segment_bytes}, self.topic_defaults)
        except InvalidConfigError as error:
            return [f"offsets_topic_segment_bytes: {error}"]
        return []


def local_nodes(count: int, base_port: int, host: str = "127.0.0.1") -> tuple[NodeAddress, ...]:
    """The node list of a local cluster (docs/architecture.md, 3)."""
    return tuple(
        NodeAddress(i, host, base_port + i - 1, base_port + RAFT_PORT_OFFSET + i - 1,
                    base_port + HTTP_PORT_OFFSET + i - 1, base_port + INTERNAL_PORT_OFFSET + i - 1)
        for i in range(1, count + 1)
    )


class NodeEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[nodes]]`` table of the file; a port left out is ``port`` plus its offset (PORT_OFFSETS)."""

    id: int
    port: int
    host: str = "127.0.0.1"
    raft_port: int | None = None
    http_port: int | None = None
    internal_port: int | None = None

    def address(self) -> NodeAddress:
        ports = {name: self.port + offset if getattr(self, name) is None else getattr(self, name)
                 for name, offset in PORT_OFFSETS.items()}
        return NodeAddress(node_id=self.id, host=self.host, port=self.port, **ports)


TopicDefault = str | int | float | bool  # a TOML value under [topic_defaults], stored as a string


def _file_schema() -> type:
    """The shape of the TOML file: each NodeConfig field with its type and default, so that every setting
    is settable (fields added later included), plus the keys that build the node list; nothing else."""
    shaped = [
        ("node_id", int),
        ("data_dir", str, "./data"),
        ("nodes", list[NodeEntry], msgspec.field(default_factory=list)),
        ("node_count", int, 1),
        ("base_port", int, 9092),
        ("topic_defaults", dict[str, TopicDefault], msgspec.field(default_factory=dict)),
    ]
    names = {entry[0] for entry in shaped}
    types = get_type_hints(NodeConfig)
    plain = [(item.name, types[item.name], item.default if item.default is not dataclasses.MISSING
              else msgspec.field(default_factory=item.default_factory))
             for item in dataclasses.fields(NodeConfig) if item.name not in names]
    return msgspec.defstruct("NodeConfigFile", shaped + plain, kw_only=True, forbid_unknown_fields=True)


NODE_CONFIG_FILE = _file_schema()


def load_node_config(path: Path | None, overrides: Mapping[str, Any]) -> NodeConfig:
    """A config from a TOML file (optional) with flag overrides (None: not given) applied on top.

    Raises InvalidConfigError naming the key and what is wrong with it.
    """
    values = _read_toml(path)
    values.update({key: str(value) if isinstance(value, Path) else value
                   for key, value in overrides.items() if value is not None})
    _check_keys(values, NODE_CONFIG_FILE.__struct_fields__, "node config")
    for index, entry in enumerate(values.get("nodes") or []):
        if isinstance(entry, dict):
            _check_keys(entry, NodeEntry.__struct_fields__, f"nodes[{index}] of the node config")
    if values.get("nodes") and ({"node_count", "base_port"} & set(values)):
        raise InvalidConfigError("node_count and base_port describe a local node list: give them or [[nodes]], "
                                 "not both")
    try:
        parsed = msgspec.convert(values, NODE_CONFIG_FILE)
    except msgspec.ValidationError as error:
        raise InvalidConfigError(_describe(error)) from None
    return _node_config(parsed).validate()


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InvalidConfigError(f"cannot read node config {path}: {error}") from None


def _check_keys(values: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = [key for key in values if key not in known]
    if unknown:
        raise InvalidConfigError("; ".join(f"unknown key {key!r} in {where}{did_you_mean(key, known)}"
                                           for key in unknown))


def _describe(error: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.session_timeout_ms`" as "node config key
    'session_timeout_ms': expected int, got str"."""
    message, _, path = str(error).replace("`", "").partition(" - at $")
    message = message[:1].lower() + message[1:]
    return f"node config key {path.lstrip('.')!r}: {message}" if path else f"node config: {message}"


def _node_config(parsed: Any) -> NodeConfig:
    nodes = tuple(entry.address() for entry in parsed.nodes) or local_nodes(parsed.node_count, parsed.base_port)
    settings = {item.name: getattr(parsed, item.name) for item in dataclasses.fields(NodeConfig)}
    settings.update(data_dir=Path(parsed.data_dir), nodes=nodes,
                    topic_defaults={name: setting_text(value) for name, value in parsed.topic_defaults.items()})
    return NodeConfig(**settings)
