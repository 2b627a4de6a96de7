"""``GET /metrics``: the node's metrics in the Prometheus text format (prometheus-client).

Each node has a registry of its own (never prometheus-client's global one)
holding ``NodeCollector`` and any extra collectors (consumer-group lag).
Counters come from ``BrokerStats`` (node/broker_stats.py), kept on the hot
paths; everything else is read from the broker's state when Prometheus
scrapes, so it costs nothing in between. Names follow Prometheus'
conventions: a ``rill_`` prefix, base units (seconds, bytes), ``_total``
for counters.

A scrape collects on the broker's loop (the collectors read state that only
the loop may touch, in one pass with no awaits: a consistent picture) and
formats the text on a worker thread, which is the larger part of the work
for many partitions. At most ``MAX_SCRAPES_IN_FLIGHT`` scrapes run at once;
more are answered 429.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from rill.node.main import Node

log = logging.getLogger(__name__)

MAX_SCRAPES_IN_FLIGHT = 4
GROUP_STATES = ("Empty", "Reconciling", "Stable")  # ConsumerGroup.state
RAFT_ROLES = ("follower", "candidate", "leader")  # pysyncobj's raft states 0, 1, 2


def metrics_routes(node: Node, extra_collectors: Iterable[Collector] = ()) -> list[web.RouteDef]:
    """The ``/metrics`` route of ``node``: its own metrics and those of ``extra_collectors``."""
    registry = CollectorRegistry(auto_describe=False)  # collect() only when scraped: the node may be starting
    registry.register(NodeCollector(node))
    for collector in extra_collectors:
        registry.register(collector)
    return [web.get("/metrics", MetricsEndpoint(registry).handle)]


class MetricsEndpoint:
    """Answers scrapes of one registry (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry
        self._in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self._in_flight >= MAX_SCRAPES_IN_FLIGHT:
            raise web.HTTPTooManyRequests(text=f"{self._in_flight} scrapes are running already; retry later")
        self._in_flight += 1
        try:
            collected = _Collected(list(self._registry.collect()))
            body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, collected)
        finally:
            self._in_flight -= 1
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Collected:
    """Metrics collected already, in the shape ``generate_latest`` formats (anything with ``collect``)."""

    def __init__(self, metrics: list[Metric]):
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


class NodeCollector(Collector):
    """Reads one node's counters and state at scrape time. Call ``collect`` on the node's loop only."""

    def __init__(self, node: Node):
        self._node = node

    def collect(self) -> Iterator[Metric]:
        yield _info(self._node)
        yield from _topic_traffic(self._node)
        yield from _requests(self._node)
        yield from _partitions(self._node)
        yield from _logs(self._node)
        yield from _raft(self._node)
        yield from _loop_lag(self._node)
        yield from _waiting(self._node)
        yield from _groups(self._node)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _info(node: Node) -> GaugeMetricFamily:
    info = GaugeMetricFamily("rill_node_info", "Always 1; labels say which node of which cluster this is.",
                             labels=["node_id", "cluster_id"])
    info.add_metric([str(node.config.node_id), node.config.cluster_id], 1)
    return info


def _topic_traffic(node: Node) -> Iterator[Metric]:
    families = {
        "records_in": CounterMetricFamily("rill_topic_records_in_total",
                                          "Records producers appended to the topic's partitions led here.",
                                          labels=["topic"]),
        "bytes_in": CounterMetricFamily("rill_topic_bytes_in_total",
                                        "Bytes of batches producers appended to the topic's partitions led here.",
                                        labels=["topic"]),
        "records_out": CounterMetricFamily("rill_topic_records_out_total",
                                           "Records this broker sent to consumers from the topic.", labels=["topic"]),
        "bytes_out": CounterMetricFamily("rill_topic_bytes_out_total",
                                         "Bytes of batches this broker sent to consumers from the topic.",
                                         labels=["topic"]),
    }
    for topic, traffic in sorted(node.stats.topics.items()):
        for field, family in families.items():
            family.add_metric([topic], getattr(traffic, field))
    yield from families.values()


def _requests(node: Node) -> Iterator[Metric]:
    stats = node.stats
    requests = CounterMetricFamily("rill_requests_total", "Client requests answered (or refused), by type.",
                                   labels=["api"])
    durations = HistogramMetricFamily("rill_request_duration_seconds",
                                      "From reading a client request to answering it, waits (long polls, "
                                      "acks=all) included.", labels=["api"])
    for api, count in sorted(stats.requests.items()):
        requests.add_metric([api], count)
        histogram = stats.latency[api]
        durations.add_metric([api], histogram.cumulative(), histogram.sum_s)
    errors = CounterMetricFamily("rill_request_errors_total",
                                 "Client requests refused, and failed partitions of produce, fetch, list-offsets "
                                 "and offset-commit answers, by request type and error.", labels=["api", "error"])
    for (api, error), count in sorted(stats.errors.items()):
        errors.add_metric([api, error], count)
    yield from (requests, durations, errors)
    yield _counter("rill_isr_shrinks_total", "ISR shrinks of partitions this broker leads.", stats.isr_shrinks)
    yield _counter("rill_isr_expands_total", "ISR expansions of partitions this broker leads.", stats.isr_expands)


def _partitions(node: Node) -> Iterator[Metric]:
    replicas = node.replicas
    led = replicas.leader_partitions()
    yield _gauge("rill_partitions", "Partition replicas on this broker.", len(replicas.partitions))
    yield _gauge("rill_leader_partitions", "Partitions this broker leads.", len(led))
    yield _gauge("rill_under_replicated_partitions", "Partitions led here whose ISR is smaller than their replicas.",
                 sum(1 for partition in led if partition.under_replicated))
    yield _gauge("rill_under_min_isr_partitions", "Partitions led here with fewer in-sync replicas than "
                 "min.insync.replicas (acks=all writes fail).",
                 sum(1 for partition in led if len(partition.state.isr) < partition.min_insync_replicas))
    yield _gauge("rill_at_min_isr_partitions", "Partitions led here with exactly min.insync.replicas in sync "
                 "(one more loss stops acks=all writes).",
                 sum(1 for partition in led if len(partition.state.isr) == partition.min_insync_replicas))
    yield _gauge("rill_offline_replicas", "Replicas on this broker that serve nothing (a disk error, or a topic "
                 "config this broker cannot apply).", len(replicas.offline_partitions()))
    leaderless = 0
    if node.controller.active:
        leaderless = sum(1 for topic in node.state.topics.values() for state in topic.partitions if state.leader < 0)
    yield _gauge("rill_offline_partitions", "Partitions of the cluster without a leader; reported by the controller, "
                 "0 on the other nodes.", leaderless)


def _logs(node: Node) -> Iterator[Metric]:
    size = GaugeMetricFamily("rill_log_size_bytes", "Bytes of the partition's log segments on this broker.",
                             labels=["topic", "partition"])
    segments = GaugeMetricFamily("rill_log_segments", "Segments of the partition's log on this broker.",
                                 labels=["topic", "partition"])
    for (topic, index), partition in sorted(node.replicas.partitions.items()):
        labels = [topic, str(index)]
        size.add_metric(labels, partition.log.size_bytes)
        segments.add_metric(labels, partition.log.segment_count)
    yield from (size, segments)


def _raft(node: Node) -> Iterator[Metric]:
    yield _gauge("rill_controller_active", "1 on the node that is the controller (Raft leader), else 0.",
                 1 if node.controller.active else 0)
    try:
        status = node._raft.getStatus()
    except RuntimeError:  # pysyncobj's thread changed a dict it iterates (at an election): next scrape has it
        log.debug("Raft status not readable now; this scrape goes without it")
        return
    role = GaugeMetricFamily("rill_raft_role", "1 for this node's Raft role, 0 for the others.", labels=["role"])
    for number, name in enumerate(RAFT_ROLES):
        role.add_metric([name], 1 if status["state"] == number else 0)
    yield role
    yield _gauge("rill_raft_term", "This node's current Raft term.", status["raft_term"])
    yield _gauge("rill_raft_commit_index", "The highest Raft log index known committed.", status["commit_idx"])
    yield _gauge("rill_raft_last_applied_index", "The highest Raft log index applied to the metadata here.",
                 status["last_applied"])


def _loop_lag(node: Node) -> Iterator[Metric]:
    lag = node.loop_lag.summary()
    for name, value_ms in (("p50", lag.p50_ms), ("p99", lag.p99_ms), ("max", lag.max_ms)):
        yield _gauge(f"rill_event_loop_lag_{name}_seconds",
                     f"{name} of how late the broker's event loop ran timers over the last minute.", value_ms / 1000)


def _waiting(node: Node) -> Iterator[Metric]:
    yield _gauge("rill_parked_requests", "Client requests waiting for their answer (long polls, acks=all, ...).",
                 node.server.parked_requests)
    yield _gauge("rill_parked_fetches", "Long-poll fetches (consumers' and followers') waiting for data.",
                 node.replicas.parked_fetches())
    yield _gauge("rill_pending_acks", "acks=all appends waiting for the in-sync replicas.",
                 node.replicas.pending_acks())


def _groups(node: Node) -> Iterator[Metric]:
    members = GaugeMetricFamily("rill_consumer_group_members", "Members of each group this broker coordinates.",
                                labels=["group"])
    states = GaugeMetricFamily("rill_consumer_group_state", "1 for each coordinated group's state, 0 for the others.",
                               labels=["group", "state"])
    rebalances = CounterMetricFamily("rill_consumer_group_rebalances_total",
                                     "Group epoch bumps (new target assignments) since this broker began "
                                     "coordinating the group.", labels=["group"])
    for group in sorted(node.coordinator.held_groups(), key=lambda group: group.group_id):
        members.add_metric([group.group_id], len(group.members))
        current = group.state
        for state in GROUP_STATES:
            states.add_metric([group.group_id, state], 1 if current == state else 0)
        rebalances.add_metric([group.group_id], group.rebalances)
    yield from (members, states, rebalances)
