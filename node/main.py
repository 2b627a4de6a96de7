"""The broker process: wires Raft metadata, storage, replication and the network server.

Startup: check the data dir belongs to this cluster, find the cluster
secret, bind the client port and the inter-broker port (CURVE, brokers
only), start Raft (its traffic encrypted with a password derived from the
secret) and wait until it has a leader and has replayed its journal, open
the logs (recovery happens here, on the disk executor: the loop keeps
answering node status meanwhile), create local replicas for the topics it
knows, then serve, register with the controller and heartbeat. SIGTERM and
SIGINT stop it cleanly: leaderships move away first (controlled shutdown),
then the socket closes, logs flush, the data dir gets its clean-shutdown
marker, and Raft stops. Every long-running task is supervised (supervisor.py): one
that dies logs CRITICAL and stops the node the same way, minus the
controlled shutdown, and the process exits with FATAL_EXIT_CODE.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import zmq
import zmq.asyncio
from pysyncobj import SyncObj
from rill.client import protocol
from rill.client.errors import InvalidConfigError, error_for_code
from rill.node.broker_stats import BrokerStats
from rill.node.cluster_secret import ClusterSecret, find_cluster_secret
from rill.node.config import NodeConfig
from rill.node.coordinator.group_coordinator import GroupCoordinator, GroupLimits
from rill.node.coordinator.lag import LAG_INTERVAL_MS, LagMonitor
from rill.node.coordinator.lag_collector import GroupLagCollector
from rill.node.coordinator.offset_timestamps import OffsetTimestampLookup
from rill.node.event_loop_lag import EventLoopLagMonitor
from rill.node.http.console_api import console_routes
from rill.node.http.metrics import metrics_routes
from rill.node.http.probes import probe_routes
from rill.node.http.server import HttpServer
from rill.node.log.manager import LogManager
from rill.node.log.producer_state import ProducerStateSettings
from rill.node.metadata.controller import Controller
from rill.node.metadata.lifecycle import BrokerLifecycle
from rill.node.metadata.naming_policy import NamingPolicy
from rill.node.metadata.raft_ticks import DeadlineSyncObj
from rill.node.metadata.state import MetadataState, raft_conf
from rill.node.metadata.topic_config import log_config
from rill.node.network.broker_client import BrokerClient
from rill.node.network.internal_listener import curve_client, open_internal_listener, start_authenticator
from rill.node.network.request_handler import RequestHandler
from rill.node.network.server import NetworkServer, ParkingLimits
from rill.node.replication.isr import ISR_CHECK_MS, IsrUpkeep
from rill.node.replication.offline_leadership import OfflineLeadership
from rill.node.replication.partition import Partition
from rill.node.replication.replica_fetcher import FETCH_MAX_BYTES, ReplicaFetcher
from rill.node.replication.replica_manager import ReplicaLimits, ReplicaManager
from rill.node.schema.enforcement import SchemaEnforcement
from rill.node.schema.registry import SchemaRegistry
from rill.node.schema.registry_state import RegistryState, add_registry_to_raft_dump
from rill.node.structured_logging import configure_logging
from rill.node.supervisor import FATAL_EXIT_CODE, TaskSupervisor, run_every

log = logging.getLogger("rill.node")

RAFT_READY_TIMEOUT_S = 60.0
CONTROLLER_TICK_MS = 100
CREATE_TOPIC_TIMEOUT_MS = 5_000
GROUP_EXPIRY_CHECK_MS = 100
CLUSTER_ID_FILE = "cluster.id"
PEER_RESPONSE_OVERHEAD_BYTES = 1 << 20  # a peer's fetch response: records, plus this for its framing


def check_cluster_id(node_dir: Path, cluster_id: str) -> None:
    """Claim the node's data dir for this cluster, or refuse one that belongs to another."""
    node_dir.mkdir(parents=True, exist_ok=True)
    marker = node_dir / CLUSTER_ID_FILE
    if marker.exists():
        found = marker.read_text().strip()
        if found != cluster_id:
            raise InvalidConfigError(f"data dir {node_dir} belongs to cluster {found!r}, not {cluster_id!r}")
    else:
        marker.write_text(cluster_id + "\n")


class Node:
    """One broker. ``run`` serves until a signal arrives."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self._stopping = asyncio.Event()
        self._raft_state_changed = asyncio.Event()  # set (from Raft's thread) when this node's Raft role changes
        self._raft: SyncObj | None = None
        self._raft_ids = {f"{n.host}:{n.raft_port}": n.node_id for n in config.nodes}
        self._registered_once = False
        self._logs_open = False  # metadata changes wait for the logs to open: opening applies every topic
        self.supervisor = TaskSupervisor(self._stopping.set)
        self.loop_lag = EventLoopLagMonitor()
        self.stats = BrokerStats()  # counters of the hot paths, for /metrics

    async def run(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        lag_monitor = self.supervisor.start("event loop lag monitor", self.loop_lag.run())
        check_cluster_id(config.node_data_dir, config.cluster_id)
        secret = find_cluster_secret(config.cluster_secret, config.data_dir, len(config.nodes))
        self.state = MetadataState(lambda event: loop.call_soon_threadsafe(self._on_metadata_change, event))
        self.logs = LogManager(config.node_data_dir, producer_settings=ProducerStateSettings(
            config.producer_id_expiration_ms, config.max_producers_per_partition))
        context = zmq.asyncio.Context()
        self.client = BrokerClient(context, config.node_id,
                                   {n.node_id: f"{n.host}:{n.internal_port}" for n in config.nodes},
                                   curve_client(secret), spawn=self.supervisor.start,
                                   max_response_bytes=config.max_request_bytes + FETCH_MAX_BYTES
                                   + PEER_RESPONSE_OVERHEAD_BYTES)
        authenticator = start_authenticator(context, secret)  # before the inter-broker port binds
        self.client.connect([n.node_id for n in config.nodes if n.node_id != config.node_id])  # liveness.py
        self.replicas = ReplicaManager(config.node_id, self.logs, self._role_changed, 2 * config.session_timeout_ms,
                                       ReplicaLimits(config.max_fetch_wait_ms, config.max_produce_timeout_ms,
                                                     config.max_pending_acks_per_partition, config.fetch_max_bytes),
                                       stats=self.stats)
        self.logs.cleanable_end_offset = self._high_watermark
        self.logs.on_storage_error = self.replicas.storage_failed
        self.isr = IsrUpkeep(config.node_id, self.client, self.replicas, self.controller_id,
                             config.replica_lag_time_max_ms)
        self.fetcher = ReplicaFetcher(config.node_id, self.client, self.replicas.high_watermark_moved,
                                      functools.partial(self.supervisor.start, may_return=True),
                                      logs=self.logs, on_storage_error=self.replicas.storage_failed)
        self.offline_leadership = OfflineLeadership(config.node_id, self.client, self.controller_id,
                                                    functools.partial(self.supervisor.start, may_return=True))
        self.coordinator = GroupCoordinator(config.node_id, self.state, self.replicas, self._create_topic,
                                            config.offsets_topic_segment_bytes,
                                            GroupLimits(config.max_groups, config.group_max_size,
                                                        config.offset_metadata_max_bytes,
                                                        config.max_subscription_pattern_length),
                                            lag=LagMonitor(OffsetTimestampLookup(config.node_id, self.state,
                                                                                 self.replicas, self.client),
                                                           config.group_stalled_after_ms))
        try:
            server, internal_server = self._bind(context, secret)
            self.server = server  # /metrics reads its parked requests
            me = config.me
            partners = [f"{n.host}:{n.raft_port}" for n in config.nodes if n.node_id != config.node_id]
            raft_settings = raft_conf(config.node_data_dir, secret.raft_password,
                                      lambda: loop.call_soon_threadsafe(self._raft_state_changed.set))
            self.schemas = RegistryState()
            consumers = [self.state, self.schemas]
            if add_registry_to_raft_dump(Path(raft_settings.fullDumpFile), len(consumers)):
                log.info("added the schema registry to the Raft snapshot written by an older version")
            self._raft = DeadlineSyncObj(f"{me.host}:{me.raft_port}", partners, raft_settings, consumers=consumers)
            self.controller = Controller(self._raft, self.state, config.cluster_id, config.topic_defaults,
                                         config.session_timeout_ms, self.client.refused_since,
                                         config.auto_leader_rebalance,
                                         naming_policy=NamingPolicy(config.topic_naming_policy))
            self.lifecycle = BrokerLifecycle(config, self.client, self.state, self.controller_id)
            handler = RequestHandler(self.state, self.controller, self.replicas, self.coordinator,
                                     self.controller_id, self.status,
                                     self._serving_clients, config.nodes,
                                     drop_produce_responses=config.testing_drop_produce_responses)
            handler.add_routes(SchemaRegistry(self.schemas, self.controller.submit,
                                              lambda: self.controller.active).routes())
            self.replicas.produce_check = SchemaEnforcement(self.state, self.schemas).check
            self.http = HttpServer(me.host, me.http_port)  # every HTTP route is added before it starts
            self.http.add_routes(metrics_routes(self, extra_collectors=[GroupLagCollector(self.coordinator)]))
            self.http.add_routes(probe_routes(self))
            self.http.add_routes(console_routes(self))
            self._handle_signals()
            serving = [self.supervisor.start("client listener", server.serve(handler)),  # node status answers
                       self.supervisor.start("inter-broker listener", internal_server.serve(handler.from_broker))]
            try:
                await self.http.start()
                if await self._wait_for_raft():
                    await self._open_logs()
                    await self._serve()
            finally:
                self.supervisor.stopping()
                for task in serving:
                    task.cancel()
                server.close()
                internal_server.close()
                await self.http.close()
        finally:
            authenticator.stop()
            await self._shutdown(context)
            lag_monitor.cancel()
            self.supervisor.close()

    async def _open_logs(self) -> None:
        """Recover every local log, drop deleted topics' logs, and take this broker's roles."""
        await self.logs.load_existing(self._storage_config)
        self._logs_open = True
        self._drop_logs_of_deleted_topics()
        for name, topic in self.state.topics.items():
            self.replicas.apply_topic(name, topic)

    def _bind(self, context: zmq.asyncio.Context, secret: ClusterSecret) -> tuple[NetworkServer, NetworkServer]:
        """The client port's server and the inter-broker port's; checks the Raft port is free too."""
        me = self.config.me
        address = f"tcp://{me.host}:{me.port}"
        internal_address = f"tcp://{me.host}:{me.internal_port}"
        try:
            server = NetworkServer(context, address, self.config.max_request_bytes, parking=ParkingLimits(
                self.config.max_parked_requests_per_connection, self.config.max_parked_requests),
                slow_request_ms=self.config.slow_request_ms, stats=self.stats)
        except zmq.ZMQError as error:
            raise InvalidConfigError(f"cannot listen on {address}: {error}") from None
        try:
            internal_server = open_internal_listener(context, internal_address, self.config.max_request_bytes,
                                                     secret, self.config.slow_request_ms)
        except zmq.ZMQError as error:
            server.close()
            raise InvalidConfigError(f"cannot listen on {internal_address} (inter-broker): {error}") from None
        _check_port_free(me.host, me.raft_port, "Raft")
        return server, internal_server

    async def _wait_for_raft(self) -> bool:
        """Until Raft has a leader and replayed its journal; False if the node is told to stop first."""
        deadline = time.monotonic() + RAFT_READY_TIMEOUT_S
        while not (self._raft.isReady() and self._raft._getLeader() is not None):
            if self._stopping.is_set():
                return False
            if time.monotonic() > deadline:
                peers = ", ".join(f"{n.host}:{n.raft_port}" for n in self.config.nodes)
                raise InvalidConfigError(f"Raft found no leader in {RAFT_READY_TIMEOUT_S:.0f} s: "
                                         f"are a majority of {peers} reachable, with this node's "
                                         "cluster secret? (Raft drops messages under another secret)")
            await asyncio.sleep(0.02)
        return True

    def _drop_logs_of_deleted_topics(self) -> None:
        """Remove local logs of topics the metadata no longer has (deleted while this node was down)."""
        for topic in {topic for topic, _ in self.logs.partitions()} - set(self.state.topics):
            log.info("deleting the logs of topic %s: it no longer exists", topic)
            self.logs.delete_topic(topic)

    def _storage_config(self, topic: str):
        state = self.state.topics.get(topic)
        return None if state is None else log_config(state.config)

    # ---- following the metadata --------------------------------------------------

    def controller_id(self) -> int:
        """The node id of the Raft leader, or -1 while there is none we can reach.

        pysyncobj keeps naming its last leader while it is connected to no peer
        (it starts no election then), so an unreachable leader counts as none.
        """
        leader = self._raft._getLeader() if self._raft else None
        if leader is None:
            return -1
        node_id = self._raft_ids.get(str(leader), -1)
        if node_id != self.config.node_id and not self._raft.isNodeConnected(leader):
            return -1
        return node_id

    async def _controller_tick(self) -> None:
        """The controller's periodic duties; a broker that is not the Raft leader waits for a change of its Raft
        role instead, so that only the controller wakes every CONTROLLER_TICK_MS."""
        while not self.controller.active:
            self._raft_state_changed.clear()
            await self._raft_state_changed.wait()
        await self.controller.tick()

    def _on_metadata_change(self, event: str) -> None:
        if event.startswith("topic:") and self._logs_open:
            name = event.removeprefix("topic:")
            self.replicas.apply_topic(name, self.state.topics.get(name))
            self.coordinator.topics_changed()

    def _high_watermark(self, topic: str, index: int) -> int:
        """Compaction stops here: records above the high watermark may still be truncated away."""
        partition = self.replicas.partitions.get((topic, index))
        return partition.high_watermark if partition is not None else 0

    def _role_changed(self, partition: Partition, role: str) -> None:
        if role == "follower":
            self.fetcher.follow(partition)
        else:
            self.fetcher.unfollow(partition)
        self.coordinator.partition_role_changed(partition, role)
        if role == "offline":
            self.offline_leadership.step_down(partition)

    async def _create_topic(self, name: str, partitions: int, replication_factor: int,
                            config: dict[str, str]) -> None:
        """Create an internal topic (the coordinator's) through the controller, wherever it runs: by the
        broker-only CREATE_INTERNAL_TOPIC, as CREATE_TOPIC refuses internal topics."""
        if self.controller.active:
            await self.controller.create_topic(name, partitions, replication_factor, config, internal=True)
            return
        request = protocol.CreateTopicRequest(name, partitions, replication_factor, config, CREATE_TOPIC_TIMEOUT_MS)
        result = await self.client.request(self.controller_id(), protocol.CREATE_INTERNAL_TOPIC, request,
                                           CREATE_TOPIC_TIMEOUT_MS)
        if result.error_code:
            raise error_for_code(result.error_code, result.error_message)

    def _serving_clients(self) -> bool:
        """Clients are served once this broker first registered (it knows the metadata by then)."""
        if not self._registered_once and self.lifecycle.registered:
            self._registered_once = True
        return self._registered_once

    def status(self) -> protocol.NodeStatusResponse:
        broker = self.state.brokers.get(self.config.node_id)
        raft_leader = self.controller_id()
        role = "leader" if self._raft._isLeader() else ("follower" if raft_leader >= 0 else "candidate")
        led = self.replicas.leader_partitions()
        lag = self.loop_lag.summary()
        return protocol.NodeStatusResponse(
            self.config.node_id, role, raft_leader, raft_leader, broker is None or broker.fenced,
            len(self.replicas.partitions), len(led), sum(1 for p in led if p.under_replicated),
            self.replicas.offline_partitions(), lag.p50_ms, lag.p99_ms, lag.max_ms)

    # ---- serving and stopping -------------------------------------------------------------

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)

    async def _serve(self) -> None:
        """Heartbeat and do the periodic duties until told to stop; then move leaderships away."""
        heartbeats = self.supervisor.start("heartbeats", self.lifecycle.run())
        duties = [self.supervisor.start(name, run_every(name, interval_ms, action)) for name, interval_ms, action in (
            ("controller tick", CONTROLLER_TICK_MS, self._controller_tick),
            ("ISR check", ISR_CHECK_MS, self.isr.check),
            ("group expiry", GROUP_EXPIRY_CHECK_MS, self.coordinator.expire_members),
            ("group lag", LAG_INTERVAL_MS, self.coordinator.measure_lag),
            ("retention", self.config.retention_check_interval_ms, _now_ms(self.logs.cleanup)),
            ("flush", self.config.flush_check_interval_ms, _now_ms(self.logs.flush_due)),
            ("producer expiry", self.config.producer_id_expiration_check_interval_ms,
             lambda: self.logs.remove_expired_producers(int(time.time() * 1000))),
        )]
        gc.freeze()  # what startup made lives on: later full collections skip it (shorter loop pauses)
        log.info("node %d serving on %s:%d", self.config.node_id, self.config.me.host, self.config.me.port)
        try:
            await self._stopping.wait()
            self.supervisor.stopping()
            heartbeats.cancel()
            if self.supervisor.failure is not None:
                log.info("node %d: stopping without a controlled shutdown after: %s", self.config.node_id,
                         self.supervisor.failure)
                return
            log.info("node %d: controlled shutdown", self.config.node_id)
            moved = await self.lifecycle.controlled_shutdown(self.config.controlled_shutdown_timeout_ms / 1000)
            log.info("node %d: leaderships %s", self.config.node_id, "moved" if moved else "not all moved")
        finally:
            for task in [heartbeats, *duties]:
                task.cancel()

    async def _shutdown(self, context: zmq.asyncio.Context) -> None:
        try:
            self.fetcher.close()
            self.client.close()
            await self.logs.close_all()
        finally:
            if self._raft is not None:
                self._raft.destroy()
            context.destroy(linger=0)
            log.info("node %d stopped", self.config.node_id)


def _check_port_free(host: str, port: int, what: str) -> None:
    """Fail at startup with a clear message, where pysyncobj would retry binding forever."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InvalidConfigError(f"cannot listen on {host}:{port} for {what}: {error}") from None


def _now_ms(action: Callable[[int], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
    def call() -> Awaitable[object]:
        return action(int(time.time() * 1000))

    return call


def run_node(config: NodeConfig) -> None:
    """Run a broker in the foreground until SIGTERM or SIGINT; exit with FATAL_EXIT_CODE if a task died."""
    configure_logging(config.node_id, config.log_level, config.log_format)
    log.info("node config: %s", config.describe())
    if config.testing_drop_produce_responses > 0:
        log.warning("testing_drop_produce_responses=%s: this broker leaves that fraction of produce requests "
                    "unanswered (for tests only)", config.testing_drop_produce_responses)
    node = Node(config)
    asyncio.run(node.run())
    if node.supervisor.failure is not None:
        log.critical("node %d exits after a fatal failure: %s", config.node_id, node.supervisor.failure)
        sys.exit(FATAL_EXIT_CODE)
