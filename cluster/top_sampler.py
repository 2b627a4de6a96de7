"""What ``rill top`` shows, gathered from a cluster once per refresh: brokers, topics with rates, groups with lag.

Each ``sample`` asks: the metadata (live brokers, controller, topics and
partition leaders), every broker ever seen for its own NODE_STATUS (Raft
role, partitions led, under-replicated; in parallel, each bounded by a
probe timeout), every partition's log end offset (one ListOffsets per
leader), and the groups (list, then describe up to MAX_GROUPS of them).
Rates come from two samples: a topic's "in" is the growth of its log end
offsets per second, its "out" the growth of the offsets its groups
committed per second (records consumed and committed, summed over groups).
A part that fails leaves its rows empty and its error in ``problems``;
the next sample tries again. Not thread-safe: one thread samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from rill.client import protocol
from rill.client.admin import Admin
from rill.client.errors import RillError
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient, parse_bootstrap
from rill.client.types import GroupDescription, GroupSummary, TopicPartition
from rill.client.zmq_flavor import new_context
from rill.cluster.probe import node_status

CLIENT_ID = "rill-top"
MAX_GROUPS = 50  # described per sample: each costs a coordinator request and a ListOffsets per leader
PROBE_THREADS = 8
K = TypeVar("K")


@dataclass(frozen=True)
class BrokerRow:
    """One broker: ``live`` if the metadata lists it (registered, not fenced); ``report`` its own NODE_STATUS
    answer (None: it did not answer)."""

    node_id: int
    address: str
    live: bool
    controller: bool
    report: protocol.NodeStatusResponse | None


@dataclass(frozen=True)
class TopicRow:
    """One topic: partitions, the sum of their log end offsets (None: no leader answered), and records per
    second appended ("in") and committed by its groups ("out") since the previous sample (None: first sample)."""

    name: str
    partitions: int
    log_end: int | None
    in_rate: float | None
    out_rate: float | None


@dataclass(frozen=True)
class GroupRow:
    """One consumer group: its state, members, total lag (None: not described) and the coordinator's lag
    verdict (None: not described, or a broker that does not give one)."""

    group_id: str
    state: str
    members: int
    lag: int | None
    lag_state: str | None


@dataclass(frozen=True)
class ClusterView:
    """One sample of the cluster, with what could not be gathered in ``problems``."""

    taken_at: float  # wall clock, for display
    brokers: list[BrokerRow]
    topics: list[TopicRow]
    groups: list[GroupRow]
    problems: list[str] = field(default_factory=list)


@dataclass
class _Offsets:
    """Offsets of one sample, to compute the next sample's rates from."""

    taken_at: float  # monotonic
    log_ends: dict[TopicPartition, int]
    committed: dict[tuple[str, TopicPartition], int]  # (group, partition) -> committed offset


class ClusterSampler:
    """Samples one cluster; owns an Admin, a network client of its own and the probes' threads."""

    def __init__(self, bootstrap: str, timeout_ms: int):
        self._timeout_ms = timeout_ms
        self._admin = Admin(bootstrap, request_timeout_ms=timeout_ms, client_id=CLIENT_ID)
        self._metadata = ClusterMetadata(parse_bootstrap(bootstrap))
        self._context = new_context()
        self._network = NetworkClient(self._context, CLIENT_ID)
        self._probes = ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="rill-top-probe")
        self._seen: dict[int, str] = {}  # every broker seen since the start: one that goes away stays, as down
        self._previous: _Offsets | None = None

    def close(self) -> None:
        self._probes.shutdown(wait=True, cancel_futures=True)
        self._network.close()
        self._context.term()
        self._admin.close()

    def sample(self) -> ClusterView:
        problems: list[str] = []
        now = time.monotonic()
        try:
            self._metadata.refresh(self._network, None, self._timeout_ms)
            self._seen.update(self._metadata.brokers)
        except RillError as error:
            problems.append(f"metadata: {error}")
        brokers = self._brokers()
        log_ends = self._log_ends(problems)
        summaries, descriptions = self._groups(problems)
        offsets = _Offsets(now, log_ends, _committed(descriptions))
        topics = self._topics(offsets)
        self._previous = offsets
        groups = [_group_row(summary.group_id, summary.state, summary.members, descriptions.get(summary.group_id))
                  for summary in summaries]
        return ClusterView(time.time(), brokers, topics, groups, problems)

    # ---- brokers ------------------------------------------------------------------------------

    def _brokers(self) -> list[BrokerRow]:
        ids = sorted(self._seen)
        reports = list(self._probes.map(lambda node_id: node_status(self._seen[node_id], self._timeout_ms), ids))
        live = self._metadata.brokers
        return [BrokerRow(node_id, self._seen[node_id], node_id in live, node_id == self._metadata.controller_id,
                          report) for node_id, report in zip(ids, reports)]

    # ---- topics -------------------------------------------------------------------------------

    def _user_topics(self) -> dict[str, list[protocol.PartitionMetadata]]:
        return {name: partitions for name, partitions in self._metadata.partitions.items()
                if name not in protocol.INTERNAL_TOPICS}

    def _log_ends(self, problems: list[str]) -> dict[TopicPartition, int]:
        """Every partition's log end offset, one ListOffsets per leader; partitions without an answer are left out."""
        by_leader: dict[str, list[TopicPartition]] = {}
        for name, partitions in self._user_topics().items():
            for partition in partitions:
                address = self._metadata.brokers.get(partition.leader)
                if address is not None:
                    by_leader.setdefault(address, []).append(TopicPartition(name, partition.partition))
        found: dict[TopicPartition, int] = {}
        for address, asked in by_leader.items():
            request = protocol.ListOffsetsRequest([
                protocol.TopicListOffsets(topic.topic, [protocol.PartitionListOffsets(p, protocol.LATEST_TIMESTAMP)
                                                        for p in topic.partitions])
                for topic in protocol.topic_partitions(asked)])
            try:
                answer = self._network.request(address, protocol.LIST_OFFSETS, request, self._timeout_ms)
            except RillError as error:
                problems.append(f"log end offsets from {address}: {error}")
                continue
            found.update({TopicPartition(topic.topic, result.partition): result.offset
                          for topic in answer.topics for result in topic.partitions if not result.error_code})
        return found

    def _topics(self, offsets: _Offsets) -> list[TopicRow]:
        previous = self._previous
        elapsed_s = None if previous is None else offsets.taken_at - previous.taken_at
        appended = _growth(offsets.log_ends, previous.log_ends if previous else {}, lambda tp: tp.topic)
        consumed = _growth(offsets.committed, previous.committed if previous else {}, lambda key: key[1].topic)
        rows = []
        for name, partitions in sorted(self._user_topics().items()):
            ends = [offsets.log_ends[tp] for tp in (TopicPartition(name, p.partition) for p in partitions)
                    if tp in offsets.log_ends]
            rows.append(TopicRow(name, len(partitions), sum(ends) if ends else None,
                                 _rate(appended.get(name, 0), elapsed_s), _rate(consumed.get(name, 0), elapsed_s)))
        return rows

    # ---- groups -------------------------------------------------------------------------------

    def _groups(self, problems: list[str]) -> tuple[list[GroupSummary], dict[str, GroupDescription]]:
        """Every group's summary, and the descriptions of the first MAX_GROUPS of them (those described
        within the timeout)."""
        try:
            summaries = self._admin.list_groups()
        except RillError as error:
            problems.append(f"groups: {error}")
            return [], {}
        descriptions = {}
        deadline = time.monotonic() + self._timeout_ms / 1000  # a slow coordinator must not hold up the refresh
        for summary in summaries[:MAX_GROUPS]:
            if time.monotonic() > deadline:
                problems.append(f"only {len(descriptions)} of {len(summaries)} groups described in time")
                break
            try:
                descriptions[summary.group_id] = self._admin.describe_group(summary.group_id)
            except RillError as error:
                problems.append(f"group {summary.group_id}: {error}")
        return summaries, descriptions


def _committed(descriptions: dict[str, GroupDescription]) -> dict[tuple[str, TopicPartition], int]:
    return {(group_id, TopicPartition(lag.topic, lag.partition)): lag.committed_offset
            for group_id, description in descriptions.items() for lag in description.partitions
            if lag.committed_offset is not None}


def _growth(now: dict[K, int], before: dict[K, int], topic_of: Callable[[K], str]) -> dict[str, int]:
    """Per topic, how much the offsets known in both samples grew (an offset that went back, by a reset or a
    re-created topic, counts as no growth)."""
    growth: dict[str, int] = {}
    for key, offset in now.items():
        if key in before:
            topic = topic_of(key)
            growth[topic] = growth.get(topic, 0) + max(0, offset - before[key])
    return growth


def _rate(count: int, elapsed_s: float | None) -> float | None:
    return None if not elapsed_s else count / elapsed_s


def _group_row(group_id: str, state: str, members: int, description: GroupDescription | None) -> GroupRow:
    if description is None:
        return GroupRow(group_id, state, members, None, None)
    # lag_state: the coordinator's verdict, on brokers that give one (getattr: older clients' descriptions lack it).
    return GroupRow(group_id, description.state, len(description.members), description.total_lag,
                    getattr(description, "lag_state", None))
