"""Real broker processes for tests: free loopback ports, a temp data dir, stopped by pid.

``BrokerProcess`` is one ``rill node`` process; alone (the default) it is a
one-node cluster with ports of its own. ``ClusterProcesses`` runs N of them
that share one node list, each with its own data dir and TOML under one
folder, and finds controllers and partition leaders through the Admin API.
For replication tests: ``AckedWriter`` (numbered records, noting what was
acknowledged where), ``TailingReader`` (a consumer reading along),
``read_partition``, ``check_acknowledged_records`` and ``replica_batches``
(a stopped replica's batches, read with the storage ``Log`` class).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, TypeVar

from rill.client import Admin, Consumer, Producer, TopicPartition
from rill.client.batch import read_header
from rill.client.errors import RillError
from rill.client.types import PartitionInfo
from rill.cluster.layout import free_ports  # noqa: F401 - ports below the ephemeral range, for every test
from rill.node.cluster_secret import generate_secret
from rill.node.log.config import LogConfig
from rill.node.log.log import Log

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 10.0
LOCAL_HOST = "127.0.0.1"


E = TypeVar("E", bound=BaseException)


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def poll_until_assigned(consumer, partitions: int, polls: int = 600) -> None:
    """Poll a group member (it joins and heartbeats inside poll) until it owns ``partitions`` partitions."""
    for _ in range(polls):
        consumer.poll(0.05)
        if len(consumer.assignment()) == partitions:
            return
    raise AssertionError(f"the member owns {sorted(consumer.assignment())}, not {partitions} partitions")


def poll_until_error(consumer, error_type: type[E], polls: int = 300) -> tuple[list, E]:
    """Every record polls return until one raises ``error_type`` (CorruptRecordError,
    DeserializationError, ...); the records and the error."""
    records: list = []
    for _ in range(polls):
        try:
            records += consumer.poll(0.1)
        except error_type as error:
            return records, error
    raise AssertionError(f"no {error_type.__name__} after {len(records)} records")


@dataclass(frozen=True)
class NodeAddress:
    """Where one node listens, as a ``[[nodes]]`` entry of the node config says it."""

    node_id: int
    port: int
    raft_port: int
    http_port: int
    internal_port: int
    host: str = LOCAL_HOST

    @classmethod
    def with_free_ports(cls, node_id: int) -> "NodeAddress":
        return cls(node_id, *free_ports(4))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_config_toml(cluster_id: str, node_id: int, data_dir: Path, nodes: Iterable[NodeAddress],
                     settings: Mapping[str, object] | None = None,
                     topic_defaults: Mapping[str, str] | None = None) -> str:
    """The TOML text of one node's config (node/config.py); ``settings`` are extra top-level keys."""
    lines = [f"cluster_id = {_toml_value(cluster_id)}", f"node_id = {node_id}", f"data_dir = {_toml_value(data_dir)}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in (settings or {}).items()]
    for node in nodes:
        lines += ["[[nodes]]", f"id = {node.node_id}", f"host = {_toml_value(node.host)}", f"port = {node.port}",
                  f"raft_port = {node.raft_port}", f"http_port = {node.http_port}",
                  f"internal_port = {node.internal_port}"]
    if topic_defaults:
        lines.append("[topic_defaults]")
        lines += [f"{_toml_value(key)} = {_toml_value(value)}" for key, value in topic_defaults.items()]
    return "\n".join(lines) + "\n"


class BrokerProcess:
    """One `rill node` process with its own data dir; alone, it also has ports of its own.

    ``data_dir`` holds the node's TOML (``node-<id>.toml``), its output
    (``node-<id>.log``, appended across starts) and its storage
    (``<data_dir>/<id>/``). ``nodes`` is the cluster's node list (default: this
    node alone on free ports); ``settings`` are extra config keys such as
    ``session_timeout_ms``; ``cluster_secret`` (default: a new one) goes into the TOML.
    """

    def __init__(self, data_dir: Path, node_id: int = 1, topic_defaults: dict[str, str] | None = None, *,
                 nodes: Iterable[NodeAddress] | None = None, cluster_id: str = "test",
                 settings: Mapping[str, object] | None = None, cluster_secret: str | None = None):
        self.data_dir = data_dir
        self.cluster_secret = cluster_secret or generate_secret()
        self.node_id = node_id
        self.nodes = tuple(nodes) if nodes is not None else (NodeAddress.with_free_ports(node_id),)
        self.address = next(node for node in self.nodes if node.node_id == node_id)
        self.port = self.address.port
        self.config_path = data_dir / f"node-{node_id}.toml"
        self.log_path = data_dir / f"node-{node_id}.log"
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config(cluster_id, {"retention_check_interval_ms": 200, **(settings or {})}, topic_defaults)

    def write_config(self, cluster_id: str, settings: Mapping[str, object],
                     topic_defaults: Mapping[str, str] | None = None) -> None:
        """(Re)write this node's TOML; takes effect at its next start."""
        settings = {"cluster_secret": self.cluster_secret, **settings}
        self.config_path.write_text(
            node_config_toml(cluster_id, self.node_id, self.data_dir, self.nodes, settings, topic_defaults))

    @property
    def bootstrap(self) -> str:
        return self.address.address

    @property
    def storage_dir(self) -> Path:
        """The broker's own folder, ``<data_dir>/<node_id>``: cluster.id, Raft files, partition dirs."""
        return self.data_dir / str(self.node_id)

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.storage_dir / f"{topic}-{partition}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """Everything the process wrote (stdout and stderr), across its starts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def spawn(self) -> "BrokerProcess":
        """Start the process without waiting for it to answer."""
        if self.alive:
            raise AssertionError(f"broker {self.node_id} is running already (pid {self.pid})")
        with open(self.log_path, "ab") as log:
            log.write(f"==== test: starting node {self.node_id} ====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rill.cluster", "node", "--id", str(self.node_id),
                 "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    def start(self) -> "BrokerProcess":
        """Start the process and wait until it answers clients (it has registered with the controller)."""
        self.spawn()
        self.wait_ready()
        return self

    def answers(self, timeout_ms: int = 500) -> bool:
        """Whether this broker answers a metadata request now; fails the test if its process exited."""
        if not self.alive:
            code = None if self.process is None else self.process.returncode
            raise AssertionError(f"broker {self.node_id} exited with {code}:\n{self.output()[-3000:]}")
        try:
            with Admin(self.bootstrap, request_timeout_ms=timeout_ms) as admin:
                admin.list_topics()
            return True
        except RillError:
            return False

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        wait_until(self.answers, timeout_s, f"broker {self.node_id} to answer")

    def send_signal(self, sig: int) -> None:
        """Send a signal by pid (nothing if the process is not running)."""
        if self.alive:
            os.kill(self.process.pid, sig)

    def wait_exit(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit; its return code (negative: killed by that signal)."""
        return self.process.wait(timeout=timeout_s)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the broker by its pid and, for KILL and TERM, wait until it is gone."""
        if not self.alive:
            return
        os.kill(self.process.pid, sig)
        if sig == signal.SIGTERM:
            os.kill(self.process.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once resumed
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.wait_exit(STOP_TIMEOUT_S if sig == signal.SIGTERM else KILL_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, and SIGKILL if it is still running after ``timeout_s``."""
        if not self.alive:
            return
        self.send_signal(signal.SIGTERM)
        self.send_signal(signal.SIGCONT)
        try:
            self.wait_exit(timeout_s)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.wait_exit(KILL_TIMEOUT_S)


class ClusterProcesses:
    """N brokers on loopback sharing one node list; each has its own data dir ``<root>/node-<id>``.

    Start with ``start_all`` (spawns every node, then waits for each to
    answer: a node answers only once it registered with the controller, which
    needs a Raft majority); stop with ``stop_all`` (by pid). Nodes keep their
    ports across restarts.
    """

    def __init__(self, root: Path, size: int = 3, *, cluster_id: str = "test",
                 settings: Mapping[str, object] | None = None, topic_defaults: dict[str, str] | None = None):
        self.root = root
        addresses = [NodeAddress.with_free_ports(node_id) for node_id in range(1, size + 1)]
        ports = [port for a in addresses for port in (a.port, a.raft_port, a.http_port, a.internal_port)]
        if len(set(ports)) != len(ports):  # free_ports of separate calls may hand out a port twice
            all_ports = free_ports(4 * size)
            addresses = [NodeAddress(i + 1, *all_ports[4 * i:4 * i + 4]) for i in range(size)]
        self.addresses = tuple(addresses)
        self.cluster_secret = generate_secret()
        self.nodes: dict[int, BrokerProcess] = {
            a.node_id: BrokerProcess(root / f"node-{a.node_id}", a.node_id, topic_defaults, nodes=self.addresses,
                                     cluster_id=cluster_id, settings=settings, cluster_secret=self.cluster_secret)
            for a in self.addresses
        }

    def __getitem__(self, node_id: int) -> BrokerProcess:
        return self.nodes[node_id]

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.nodes)

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated."""
        return ",".join(self.nodes[node_id].bootstrap for node_id in self.node_ids)

    def bootstrap_of(self, node_ids: Iterable[int]) -> str:
        return ",".join(self.nodes[node_id].bootstrap for node_id in node_ids)

    def alive_ids(self) -> list[int]:
        return [node_id for node_id in self.node_ids if self.nodes[node_id].alive]

    # ---- processes ----------------------------------------------------------------

    def start_all(self, timeout_s: float = READY_TIMEOUT_S) -> "ClusterProcesses":
        """Spawn every node that is not running, then wait until each answers."""
        started = [node for node in self.nodes.values() if not node.alive]
        for node in started:
            node.spawn()
        deadline = time.monotonic() + timeout_s
        for node in started:
            node.wait_ready(max(1.0, deadline - time.monotonic()))
        return self

    def start(self, node_id: int, wait: bool = True) -> BrokerProcess:
        node = self.nodes[node_id].spawn()
        if wait:
            node.wait_ready()
        return node

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Signal one node by pid; after KILL or TERM wait until its process is gone."""
        self.nodes[node_id].kill(sig)

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[int, int | None]:
        """SIGTERM (and SIGCONT) every running node at once; SIGKILL those alive after ``timeout_s``.

        Returns each node's exit code (None for nodes that were not running).
        """
        running = [node for node in self.nodes.values() if node.alive]
        for node in running:
            node.send_signal(signal.SIGTERM)
            node.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + timeout_s
        for node in running:
            try:
                node.wait_exit(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.send_signal(signal.SIGKILL)
                node.wait_exit(KILL_TIMEOUT_S)
        return {node_id: node.process.returncode if node in running else None
                for node_id, node in self.nodes.items()}

    def kill_all(self) -> None:
        """SIGKILL every running node (fast teardown)."""
        for node in self.nodes.values():
            node.send_signal(signal.SIGKILL)
        for node in self.nodes.values():
            if node.process is not None:
                node.wait_exit(KILL_TIMEOUT_S)

    def output(self, node_id: int) -> str:
        return self.nodes[node_id].output()

    def outputs(self) -> str:
        """Every node's output, for failure messages."""
        return "\n".join(f"---- node {node_id} ----\n{self.nodes[node_id].output()[-4000:]}"
                         for node_id in self.node_ids)

    # ---- what the cluster says ------------------------------------------------------

    def admin(self, node_ids: Iterable[int] | None = None, request_timeout_ms: int = 10_000) -> Admin:
        """An Admin bootstrapped from these nodes (default: the running ones)."""
        ids = list(node_ids) if node_ids is not None else self.alive_ids()
        return Admin(self.bootstrap_of(ids), request_timeout_ms=request_timeout_ms)

    def _ask(self, question: Callable[[Admin], object], node_ids: Iterable[int] | None, timeout_ms: int):
        with self.admin(node_ids, request_timeout_ms=timeout_ms) as admin:
            return question(admin)

    def controller_id(self, node_ids: Iterable[int] | None = None, timeout_ms: int = 2_000) -> int:
        """The controller as a broker reports it (-1 while there is none)."""
        return self._ask(lambda admin: admin.describe_cluster().controller_id, node_ids, timeout_ms)

    def live_brokers(self, node_ids: Iterable[int] | None = None, timeout_ms: int = 2_000) -> list[int]:
        """The brokers that the asked broker calls live (registered, not fenced), by node id."""
        description = self._ask(lambda admin: admin.describe_cluster(), node_ids, timeout_ms)
        return [broker.node_id for broker in description.brokers]

    def partition(self, topic: str, partition: int = 0, node_ids: Iterable[int] | None = None,
                  timeout_ms: int = 2_000) -> PartitionInfo:
        """The partition as described by a broker: leader, replicas, ISR, epoch, high watermark."""
        return self._ask(lambda admin: admin.describe_topic(topic).partitions[partition], node_ids, timeout_ms)

    def leader_of(self, topic: str, partition: int = 0) -> int:
        return self.partition(topic, partition).leader

    def try_(self, question: Callable[[], object]) -> object:
        """``question()``, or None if it raised a RillError (for polls while the cluster changes)."""
        try:
            return question()
        except RillError:
            return None

    def wait_for_controller(self, not_in: Iterable[int] = (), timeout_s: float = 30.0,
                            node_ids: Iterable[int] | None = None) -> int:
        """A controller other than ``not_in``, as the asked brokers report it."""
        excluded = set(not_in)

        def elected() -> int | None:
            controller = self.try_(lambda: self.controller_id(node_ids))
            return controller if controller is not None and controller > 0 and controller not in excluded else None

        return wait_until(elected, timeout_s, f"a controller other than {sorted(excluded)}", 0.1)

    def wait_for_partition(self, topic: str, condition: Callable[[PartitionInfo], bool], what: str,
                           partition: int = 0, timeout_s: float = 30.0,
                           node_ids: Iterable[int] | None = None) -> PartitionInfo:
        """Poll the partition's description until ``condition`` holds; returns that description."""

        def met() -> PartitionInfo | None:
            info = self.try_(lambda: self.partition(topic, partition, node_ids))
            return info if info is not None and condition(info) else None

        return wait_until(met, timeout_s, f"{topic}-{partition}: {what}", 0.1)

    def wait_for_leader(self, topic: str, partition: int = 0, not_in: Iterable[int] = (),
                        timeout_s: float = 30.0) -> PartitionInfo:
        excluded = set(not_in)
        return self.wait_for_partition(topic, lambda p: p.leader > 0 and p.leader not in excluded,
                                       f"a leader other than {sorted(excluded)}", partition, timeout_s)

    def wait_in_isr(self, topic: str, node_id: int, partition: int = 0, timeout_s: float = 30.0) -> PartitionInfo:
        return self.wait_for_partition(topic, lambda p: node_id in p.isr, f"broker {node_id} in the ISR",
                                       partition, timeout_s)

    def create_topic(self, topic: str, partitions: int = 1, config: dict[str, object] | None = None
                     ) -> list[PartitionInfo]:
        """A topic replicated on every broker, returned once every replica of every partition is in sync."""
        with self.admin() as admin:
            admin.create_topic(topic, partitions=partitions, replication_factor=len(self.nodes), config=config)
        return self.wait_full_isr(topic, partitions)

    def wait_full_isr(self, topic: str, partitions: int = 1, timeout_s: float = 30.0) -> list[PartitionInfo]:
        """Every partition of the topic has all its replicas in sync and a live leader."""
        return [self.wait_for_partition(topic, lambda p: p.leader > 0 and sorted(p.isr) == sorted(p.replicas),
                                        "every replica in the ISR", index, timeout_s)
                for index in range(partitions)]


# ---- workloads and checks for replication tests ------------------------------------------


class AckedWriter:
    """A thread that sends numbered records (values b"0", b"1", ...) to a topic until stopped.

    Notes every acknowledged number in ``acked`` (in acknowledgement order)
    with where it was stored in ``stored_at`` (number -> (partition, offset)),
    and every failed one in ``failed`` as (number, error), from the
    producer's callbacks; ``partition=None`` lets the producer choose. It
    sends at most ``records_per_s`` (the brokers share the machine's cores
    with the test) and keeps at most ``outstanding_max`` records sent and not
    yet answered, so a stalled partition does not grow memory without bound.
    Producer settings are passed through.
    """

    def __init__(self, bootstrap: str, topic: str, partition: int | None = 0, *, outstanding_max: int = 2_000,
                 records_per_s: float = 5_000, records_max: int = 10_000_000, **producer_settings):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partition = partition
        self.outstanding_max = outstanding_max
        self.records_per_s = records_per_s
        self.records_max = records_max
        self.settings = {"acks": "all", "linger_ms": 1, "batch_size": 4_096, **producer_settings}
        self.acked: list[int] = []
        self.stored_at: dict[int, tuple[int, int]] = {}
        self.failed: list[tuple[int, BaseException]] = []
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._close_timeout_s: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"writer-{topic}", daemon=True)

    def start(self) -> "AckedWriter":
        self._thread.start()
        return self

    def __enter__(self) -> "AckedWriter":
        return self.start()

    def __exit__(self, exc_type, exc, traceback) -> None:
        """Stop; after a failure in the block, fast (records still outstanding fail) and without raising."""
        if exc_type is None:
            self.stop()
        else:
            self._close_timeout_s = 0.0
            self._stop.set()
            self._thread.join(30)

    def _done(self, number: int, future) -> None:
        error = future.exception()
        if error is None:
            metadata = future.result()
            self.stored_at[number] = (metadata.partition, metadata.offset)
            self.acked.append(number)
        else:
            self.failed.append((number, error))

    def _run(self) -> None:
        try:
            producer = Producer(self.bootstrap, **self.settings)
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error
            return
        try:
            self._send_until_stopped(producer)
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error
        finally:
            producer.close(self._close_timeout_s)  # waits for every outstanding record's answer

    def _send_until_stopped(self, producer) -> None:
        next_at = time.monotonic()
        for number in range(self.records_max):
            if number % 100 == 0:  # keep to records_per_s (no catching up after a stall)
                now = time.monotonic()
                if next_at > now and self._stop.wait(next_at - now):
                    return
                next_at = max(next_at, now) + 100 / self.records_per_s
            while self.sent - len(self.acked) - len(self.failed) >= self.outstanding_max:
                if self._stop.wait(0.005):
                    return
            if self._stop.is_set():
                return
            future = producer.send(self.topic, b"%d" % number, partition=self.partition)
            self.sent += 1
            future.add_done_callback(lambda f, n=number: self._done(n, f))

    def end_offset(self, partition: int | None = None) -> int:
        """One past the highest offset acknowledged (in ``partition``; default: the writer's)."""
        partition = self.partition if partition is None else partition
        return 1 + max((offset for p, offset in self.stored_at.values() if p == partition), default=-1)

    def wait_acked(self, count: int, timeout_s: float, what: str = "") -> None:
        """Wait until at least ``count`` records in all are acknowledged."""
        try:
            wait_until(lambda: len(self.acked) >= count or self.error is not None, timeout_s,
                       what or f"{count} acknowledged records")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out} (writer: {self.sent} sent, {len(self.acked)} acknowledged, "
                                 f"{len(self.failed)} failed {self.failed[:2]}, wanted {count})") from None
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}")

    def wait_more_acked(self, more: int, timeout_s: float, what: str = "") -> None:
        self.wait_acked(len(self.acked) + more, timeout_s, what)

    def stop(self, timeout_s: float = 150.0) -> None:
        """Stop sending; the producer's close waits for every outstanding record's answer."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"the writer did not stop within {timeout_s} s")
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}")


class TailingReader:
    """A thread that consumes one partition from offset 0 while the test runs: ``seen`` is every
    (offset, value) it was given, in order; ``error`` is what ended it early, if anything."""

    def __init__(self, bootstrap: str, topic: str, partition: int = 0):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partition = partition
        self.seen: list[tuple[int, bytes]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{topic}", daemon=True)

    def __enter__(self) -> "TailingReader":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            with Consumer(self.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100) as consumer:
                consumer.assign([TopicPartition(self.topic, self.partition)])
                while not self._stop.is_set():
                    self.seen += [(record.offset, record.value) for record in consumer.poll(0.1)]
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    @property
    def end_offset(self) -> int:
        """One past the highest offset read."""
        return self.seen[-1][0] + 1 if self.seen else 0

    def read_up_to(self, end_offset: int, timeout_s: float = 60.0) -> None:
        """Wait until it has read every offset below ``end_offset``."""
        wait_until(lambda: self.error is not None or (self.seen and self.seen[-1][0] >= end_offset - 1), timeout_s,
                   f"the tailing reader to reach offset {end_offset} (at {self.seen[-1][0] if self.seen else None})")
        if self.error is not None:
            raise AssertionError(f"the tailing reader failed: {self.error!r}")

    def check_against(self, records: list) -> None:
        """Assert it read each offset once, in order from 0, and only what the partition still holds
        there: a consumer never sees a record that a failover later takes back."""
        offsets = [offset for offset, _ in self.seen]
        assert offsets == list(range(len(offsets))), "the tailing reader got each offset once, in order from 0"
        final = {record.offset: record.value for record in records}
        changed = [(offset, value, final.get(offset)) for offset, value in self.seen if final.get(offset) != value]
        assert not changed, (f"{len(changed)} records a consumer saw are not in the log any more, e.g. "
                             f"(offset, seen, now) {changed[:5]}")


def read_partition(bootstrap: str, topic: str, partition: int = 0, timeout_s: float = 60.0,
                   min_end_offset: int = 0) -> list:
    """Every record of one partition from offset 0 up to its end offset (high watermark).

    The end offset is taken once it is at least ``min_end_offset`` (say, past every record acknowledged
    with acks=all): right after a leader change the new leader may report a lower one for a while.
    """
    tp = TopicPartition(topic, partition)
    with Consumer(bootstrap, auto_offset_reset="earliest", max_poll_records=10_000) as consumer:
        consumer.assign([tp])
        ends: list[int] = []

        def end_reached() -> int | None:
            try:
                ends.append(consumer.end_offsets([tp])[tp])
            except RillError:
                return None
            return ends[-1] if ends[-1] >= min_end_offset else None

        try:
            end = wait_until(end_reached, timeout_s / 2, f"the end offset of {topic}-{partition} to reach "
                             f"{min_end_offset}", interval_s=0.1)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; it said {ends[-5:]}") from None
        records: list = []
        deadline = time.monotonic() + timeout_s
        while (not records or records[-1].offset < end - 1) and end > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(records)} records of {topic}-{partition} "
                                     f"(end offset {end}) in {timeout_s} s")
            records += consumer.poll(0.2)
    return records


def check_acknowledged_records(records: list, acked: Iterable[int], ordered: bool = True,
                               stored_at: Mapping[int, tuple[int, int]] | None = None) -> list[int]:
    """Assert on one partition's records: offsets dense from 0, every acknowledged number present,
    (``ordered``) first seen in send order, and (``stored_at``) at the offset its acknowledgement gave.
    Returns the numbers read."""
    offsets = [record.offset for record in records]
    assert offsets == list(range(len(records))), "offsets are dense from 0: no gaps"
    values = [record.value for record in records]
    numbers = [int(value) for value in values if value.isdigit()]  # other values: a test's probes
    acked = list(acked)
    lost = sorted(set(acked) - set(numbers))
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:10]} (read {len(numbers)})"
    for number in acked if stored_at is not None else ():
        _, offset = stored_at[number]
        assert offset < len(values) and values[offset] == b"%d" % number, (
            f"record {number} was acknowledged at offset {offset}, which holds "
            f"{values[offset] if offset < len(values) else 'nothing'!r}")
    if ordered:
        first_seen: dict[int, int] = {}
        for position, number in enumerate(numbers):
            first_seen.setdefault(number, position)
        by_position = sorted(acked, key=first_seen.__getitem__)
        assert by_position == sorted(acked), "acknowledged records are read in the order they were sent"
    return numbers


def replica_batches(partition_dir: Path) -> list[tuple[int, int, bytes]]:
    """Every batch of a stopped broker's partition replica as (base offset, last offset, bytes).

    Opens a copy of the directory with the storage ``Log`` class (opening
    may recover and rewrite files; the broker's own files stay as they were).
    """
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / partition_dir.name
        shutil.copytree(partition_dir, copy)
        log = Log(copy, LogConfig())
        batches = []
        try:
            offset, end = log.log_start_offset, log.log_end_offset
            while offset < end:
                data = log.read(offset, 1 << 30)
                assert data, f"{partition_dir}: no batch at offset {offset} below the log end {end}"
                position = 0
                while position < len(data):
                    header = read_header(data, position)
                    batches.append((header.base_offset, header.last_offset,
                                    bytes(data[position:position + header.size])))
                    position += header.size
                    offset = header.last_offset + 1
        finally:
            log.close()
    return batches
