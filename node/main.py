"""The broker process: wires Raft metadata, storage, the data plane and the network server.

Startup order: check the data dir belongs to this cluster, open the logs
(recovery happens here), start Raft and wait until it has replayed its
journal, create local replicas for the topics it knows, register this
broker, then serve. SIGTERM and SIGINT stop it cleanly: the network socket
closes, logs flush and write their clean-shutdown markers, Raft stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import zmq
import zmq.asyncio
from pysyncobj import SyncObj

from rill.client.errors import InvalidConfigError
from rill.node.config import NodeConfig
from rill.node.controller import Controller
from rill.node.log.manager import LogManager
from rill.node.metadata_state import BrokerRegistration, MetadataState, raft_conf
from rill.node.network_server import NetworkServer
from rill.node.replica_manager import ReplicaManager
from rill.node.request_handler import RequestHandler
from rill.node.topic_config import log_config

log = logging.getLogger("rill.node")

RAFT_READY_TIMEOUT_S = 60.0
CLUSTER_ID_FILE = "cluster.id"


def check_cluster_id(node_dir: Path, cluster_id: str) -> None:
    """Claim the node's data dir for this cluster, or refuse one that belongs to another."""
    node_dir.mkdir(parents=True, exist_ok=True)
    marker = node_dir / CLUSTER_ID_FILE
    if marker.exists():
        found = marker.read_text().strip()
        if found != cluster_id:
            raise InvalidConfigError(
                f"data dir {node_dir} belongs to cluster {found!r}, not {cluster_id!r}"
            )
    else:
        marker.write_text(cluster_id + "\n")


class Node:
    """One broker. ``run`` serves until ``stop`` is called or a signal arrives."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self._stopping = asyncio.Event()
        self._raft: SyncObj | None = None
        self._addresses = {f"{n.host}:{n.raft_port}": n.node_id for n in config.nodes}

    async def run(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        check_cluster_id(config.node_data_dir, config.cluster_id)
        self.state = MetadataState(lambda event: loop.call_soon_threadsafe(self._on_metadata_change, event))
        self.logs = LogManager(config.node_data_dir)
        self.replicas = ReplicaManager(config.node_id, self.logs)
        me = config.me
        partners = [f"{n.host}:{n.raft_port}" for n in config.nodes if n.node_id != config.node_id]
        context = zmq.asyncio.Context()
        try:
            server = self._bind(context)
            self._raft = SyncObj(f"{me.host}:{me.raft_port}", partners, raft_conf(config.node_data_dir),
                                 consumers=[self.state])
            await self._wait_for_raft()
            self.logs.load_existing(self._storage_config)
            self._drop_logs_of_deleted_topics()
            for name, topic in self.state.topics.items():
                self.replicas.apply_topic(name, topic)
            controller = Controller(self._raft, self.state, config.topic_defaults)
            await controller.register_broker(BrokerRegistration(config.node_id, me.host, me.port, time.time_ns()))
            handler = RequestHandler(self.state, controller, self.replicas, self._controller_id)
            await self._serve(server, handler)
        finally:
            self._shutdown(context)

    def _bind(self, context: zmq.asyncio.Context) -> NetworkServer:
        address = f"tcp://{self.config.me.host}:{self.config.me.port}"
        try:
            return NetworkServer(context, address, self.config.max_request_bytes)
        except zmq.ZMQError as error:
            raise InvalidConfigError(f"cannot listen on {address}: {error}") from None

    async def _wait_for_raft(self) -> None:
        deadline = time.monotonic() + RAFT_READY_TIMEOUT_S
        while not (self._raft.isReady() and self._raft._getLeader() is not None):
            if time.monotonic() > deadline:
                raise InvalidConfigError("Raft found no leader: are a majority of the nodes reachable?")
            await asyncio.sleep(0.02)

    def _drop_logs_of_deleted_topics(self) -> None:
        """Remove local logs of topics the metadata no longer has (deleted while this node was down)."""
        for topic in {topic for topic, _ in self.logs.partitions()} - set(self.state.topics):
            log.info("deleting the logs of topic %s: it no longer exists", topic)
            self.logs.delete_topic(topic)

    def _storage_config(self, topic: str):
        state = self.state.topics.get(topic)
        return None if state is None else log_config(state.config)

    def _controller_id(self) -> int:
        leader = self._raft._getLeader() if self._raft else None
        return self._addresses.get(str(leader), -1) if leader is not None else -1

    def _on_metadata_change(self, event: str) -> None:
        if event.startswith("topic:") and hasattr(self, "replicas"):
            name = event.removeprefix("topic:")
            self.replicas.apply_topic(name, self.state.topics.get(name))

    async def _serve(self, server: NetworkServer, handler: RequestHandler) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        tasks = [
            asyncio.ensure_future(server.serve(handler)),
            asyncio.ensure_future(self._every(self.config.retention_check_interval_ms, self.logs.cleanup)),
            asyncio.ensure_future(self._every(self.config.flush_check_interval_ms, self.logs.flush_due)),
        ]
        log.info("node %d serving on %s:%d", self.config.node_id, self.config.me.host, self.config.me.port)
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            server.close()

    async def _every(self, interval_ms: int, action) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                action(int(time.time() * 1000))
            except Exception:
                log.exception("periodic task %s failed", action)

    def stop(self) -> None:
        self._stopping.set()

    def _shutdown(self, context: zmq.asyncio.Context) -> None:
        try:
            self.logs.close_all()
        finally:
            if self._raft is not None:
                self._raft.destroy()
            context.destroy(linger=0)
            log.info("node %d stopped", self.config.node_id)


def run_node(config: NodeConfig) -> None:
    """Run a broker in the foreground until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=os.environ.get("RILL_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s node-{config.node_id} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(Node(config).run())
