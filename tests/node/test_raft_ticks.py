"""The metadata Raft's thread sleeps until its next deadline, and commands never wait for a tick (raft_ticks.py).

Three in-process Raft nodes with the brokers' settings (raft_conf) elect a
leader; then every timer is pushed a minute away (heartbeats, elections,
the leader's step-down, the longest poll). Commands submitted on the leader
and on a follower still commit and are applied on all three nodes well
before any timer is due, which only events can bring about.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from pysyncobj import SyncObjConsumer, replicated
from rill.node.metadata.raft_ticks import ELECTION_DUE, HEARTBEAT_DUE, DeadlineSyncObj
from rill.node.metadata.state import raft_conf

from brokers import free_ports, wait_until

FAR_S = 60.0  # every timer, once the leader is elected
APPLIED_TIMEOUT_S = 20.0  # well before FAR_S / 2: a command that waited for a timer would not make it
TIMERS = ("appendEntriesPeriod", "autoTickPeriod", "raftMinTimeout", "raftMaxTimeout", "leaderFallbackTimeout")


class Register(SyncObjConsumer):
    """One replicated value."""

    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    @replicated
    def set(self, value: int) -> int:
        self.value = value
        return value


Cluster = list[tuple[DeadlineSyncObj, Register]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes with the brokers' Raft settings, a leader elected (connections never time out: the test
    leaves them silent)."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    nodes: Cluster = []
    try:
        for number, address in enumerate(addresses):
            conf = raft_conf(tmp_path / f"node-{number}", "test-password")
            conf.connectionTimeout = 10 * FAR_S
            register = Register()
            peers = [other for other in addresses if other != address]
            nodes.append((DeadlineSyncObj(address, peers, conf, consumers=[register]), register))
        wait_until(lambda: _leader(nodes) is not None, 30, "a Raft leader known to every node")
        yield nodes
    finally:
        for node, _ in nodes:
            node.destroy()


def _leader(nodes: Cluster) -> int | None:
    """The index of the one leader, once every node knows a leader."""
    leaders = [index for index, (node, _) in enumerate(nodes) if node._isLeader()]
    known = all(node._getLeader() is not None for node, _ in nodes)
    return leaders[0] if len(leaders) == 1 and known else None


def _set_everywhere(nodes: Cluster, submitter: int, value: int) -> None:
    """Submit ``value`` on node ``submitter`` and wait until every node applied it."""
    nodes[submitter][1].set(value)
    wait_until(lambda: all(register.value == value for _, register in nodes), APPLIED_TIMEOUT_S,
               f"value {value} applied on every node")


def _set_timers(nodes: Cluster, values: dict[str, float]) -> None:
    for node, _ in nodes:
        for name, value in values.items():
            setattr(node.conf, name, value)


def _seconds_until(node: DeadlineSyncObj, deadline: str) -> float:
    return getattr(node, deadline) - time.monotonic()


def test_commands_commit_and_apply_everywhere_without_waiting_for_a_tick(cluster: Cluster) -> None:
    leader = _leader(cluster)
    follower = (leader + 1) % len(cluster)
    assert all(hasattr(node, HEARTBEAT_DUE) and hasattr(node, ELECTION_DUE) for node, _ in cluster), \
        "pysyncobj's private deadlines moved: raft_ticks.py falls back to ticking every heartbeat period"
    saved = {name: getattr(cluster[0][0].conf, name) for name in TIMERS}
    try:
        _set_timers(cluster, {"raftMinTimeout": FAR_S, "raftMaxTimeout": 2 * FAR_S, "leaderFallbackTimeout": FAR_S})
        wait_until(lambda: all(_seconds_until(node, ELECTION_DUE) > FAR_S / 2
                               for index, (node, _) in enumerate(cluster) if index != leader),
                   30, "the followers' election deadlines a minute away (set by the next heartbeat)")
        _set_timers(cluster, {"appendEntriesPeriod": FAR_S, "autoTickPeriod": FAR_S})
        wait_until(lambda: _seconds_until(cluster[leader][0], HEARTBEAT_DUE) > FAR_S / 2, 30,
                   "the leader's next heartbeat a minute away")
        assert cluster[leader][0].poll_wait(FAR_S) > FAR_S / 2  # nothing wakes the Raft threads but events now

        _set_everywhere(cluster, leader, 1)
        _set_everywhere(cluster, follower, 2)  # forwarded to the leader
        _set_everywhere(cluster, leader, 3)
        assert _leader(cluster) == leader
    finally:
        _set_timers(cluster, saved)
        _set_everywhere(cluster, leader, 4)  # every node's poll ends and takes the short timers again
