"""ISR changes of many partitions in one Raft command (MetadataState.alter_isrs, code version 1).

Each change is checked as alter_isr checks one and fails alone; a journal written before the command existed
replays (pysyncobj numbers commands by (version, consumer, name): a version-1 command comes after every
version-0 one); the controller uses the batched command only once the cluster switched to version 1, and one
command per change before.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Iterator

import pytest
from brokers import free_ports, wait_until
from pysyncobj import SyncObj
from rill.client import protocol
from rill.client.errors import (
    FencedLeaderEpochError,
    InvalidRequestError,
    UnknownTopicError,
)
from rill.node.metadata.controller import Controller
from rill.node.metadata.state import (
    RAFT_CODE_VERSION,
    BrokerRegistration,
    MetadataState,
    PartitionState,
    TopicState,
    raft_conf,
)
from rill.node.schema.registry_state import RegistryState

INCARNATION = 7
RAFT_TIMEOUT_S = 20


def topic(name: str, partitions: int) -> TopicState:
    return TopicState(name, f"id-{name}", {}, tuple(PartitionState((1, 2, 3), 1, 0, (1,)) for _ in range(partitions)))


def registered(state: MetadataState, **apply) -> None:
    for node_id in (1, 2, 3):
        state.register_broker(BrokerRegistration(node_id, "127.0.0.1", 9000 + node_id, INCARNATION), **apply)


# ---- the command ------------------------------------------------------------------------


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def state(events) -> MetadataState:
    state = MetadataState(events.append)
    registered(state, _doApply=True)
    state.create_topic(topic("orders", 3), _doApply=True)
    state.create_topic(topic("payments", 2), _doApply=True)
    events.clear()
    return state


def test_each_change_fails_alone_and_each_changed_topic_is_replaced_once(state, events):
    codes = state.alter_isrs(1, (
        ("orders", 0, 0, 0, (1, 2)),
        ("orders", 1, 0, 5, (1, 2)),         # a stale partition epoch
        ("orders", 2, 0, 0, (1, 2, 3)),
        ("nowhere", 0, 0, 0, (1, 2)),        # no such topic
        ("payments", 7, 0, 0, (1, 2)),       # no such partition
        ("payments", 0, 0, 0, (1, 4)),       # not a replica
        ("payments", 1, 0, 0, (1, 3)),
    ), _doApply=True)
    assert codes == [0, FencedLeaderEpochError.code, 0, UnknownTopicError.code, UnknownTopicError.code,
                     InvalidRequestError.code, 0]
    orders, payments = state.topics["orders"].partitions, state.topics["payments"].partitions
    assert [p.isr for p in orders] == [(1, 2), (1,), (1, 2, 3)]
    assert [p.partition_epoch for p in orders] == [1, 0, 1]
    assert [p.isr for p in payments] == [(1,), (1, 3)]
    assert sorted(events) == ["topic:orders", "topic:payments"]


def test_changes_of_one_partition_apply_in_order_on_what_the_earlier_left(state):
    codes = state.alter_isrs(1, (("orders", 0, 0, 0, (1, 2)), ("orders", 0, 0, 0, (1, 2, 3)),
                                 ("orders", 0, 0, 1, (1, 3))), _doApply=True)
    assert codes == [0, FencedLeaderEpochError.code, 0]
    assert state.topics["orders"].partitions[0].isr == (1, 3)


def test_another_leader_is_refused(state):
    assert state.alter_isrs(2, (("orders", 0, 0, 0, (1, 2)),), _doApply=True) == [FencedLeaderEpochError.code]
    assert state.topics["orders"].partitions[0].isr == (1,)


# ---- in Raft: journal compatibility and the code version -----------------------------------


class StateBeforeBatching(MetadataState):
    """MetadataState as an older version had it: without alter_isrs (pysyncobj skips non-callables)."""

    alter_isrs = None
    alter_isrs_v1 = None


class Raft:
    """A one-node Raft of the broker's settings and consumers, in ``data_dir`` (its journal survives)."""

    def __init__(self, data_dir: Path, state_class: type[MetadataState] = MetadataState):
        self.events: list[str] = []
        self.state = state_class(self.events.append)
        port = free_ports(1)[0]
        self.syncobj = SyncObj(f"127.0.0.1:{port}", [], raft_conf(data_dir, "test-password"),
                               consumers=[self.state, RegistryState()])
        wait_until(lambda: self.syncobj.isReady() and self.syncobj._isLeader(), RAFT_TIMEOUT_S, "a ready Raft")

    def set_code_version(self, version: int) -> None:
        done = threading.Event()
        self.syncobj.setCodeVersion(version, callback=lambda result, error: done.set())
        assert done.wait(RAFT_TIMEOUT_S)

    def close(self) -> None:
        self.syncobj.destroy()


@pytest.fixture
def raft_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "raft"


def sync(command, *arguments):
    return command(*arguments, sync=True, timeout=RAFT_TIMEOUT_S)


def test_a_journal_of_the_older_command_set_replays_and_then_takes_batches(raft_dir):
    old = Raft(raft_dir, StateBeforeBatching)
    try:
        registered(old.state, sync=True)
        assert sync(old.state.create_topic, topic("orders", 2)) == 0
        assert sync(old.state.alter_isr, "orders", 0, 1, 0, 0, (1, 2)) == 0
    finally:
        old.close()

    new = Raft(raft_dir)
    try:
        wait_until(lambda: "orders" in new.state.topics, RAFT_TIMEOUT_S, "the older journal replayed")
        assert [p.isr for p in new.state.topics["orders"].partitions] == [(1, 2), (1,)]
        assert new.syncobj.getCodeVersion() == 0
        new.set_code_version(RAFT_CODE_VERSION)
        assert sync(new.state.alter_isrs, 1, (("orders", 0, 0, 1, (1, 2, 3)), ("orders", 1, 0, 0, (1, 3)))) == [0, 0]
    finally:
        new.close()

    again = Raft(raft_dir)
    try:
        wait_until(lambda: again.syncobj.getCodeVersion() == RAFT_CODE_VERSION
                   and "orders" in again.state.topics
                   and again.state.topics["orders"].partitions[1].isr == (1, 3), RAFT_TIMEOUT_S,
                   "the batched command replayed")
        assert again.state.topics["orders"].partitions[0].isr == (1, 2, 3)
    finally:
        again.close()


def alter_partition_request(leader_epoch_of_1: int) -> protocol.AlterPartitionRequest:
    return protocol.AlterPartitionRequest(1, [
        protocol.AlterPartitionTopic("orders", [protocol.AlterPartitionItem(0, 0, 0, [1, 2]),
                                                protocol.AlterPartitionItem(1, leader_epoch_of_1, 0, [1, 2])]),
        protocol.AlterPartitionTopic("nowhere", [protocol.AlterPartitionItem(0, 0, 0, [1])]),
    ])


def codes_of(response: protocol.AlterPartitionResponse) -> dict[tuple[str, int], int]:
    return {(t.topic, p.partition): p.error_code for t in response.topics for p in t.partitions}


def test_the_controller_commits_one_command_per_change_until_it_switched_the_code_version(raft_dir):
    """The controller switches the version itself, without a tick, once every registered broker's heartbeat
    reports the version (a rolling upgrade switches when its last broker runs it): also what a node does
    whose Raft forgot the newer commands when it loaded a snapshot (pysyncobj resets them to version 0)."""
    raft = Raft(raft_dir)

    async def scenario() -> None:
        controller = Controller(raft.syncobj, raft.state, "cluster", {}, 6_000, lambda node_id: None,
                                auto_leader_rebalance=False)
        for node_id in (1, 2, 3):
            await controller.submit(raft.state.register_broker,
                                    BrokerRegistration(node_id, "127.0.0.1", 9000 + node_id, INCARNATION))
        await controller.submit(raft.state.create_topic, topic("orders", 3))
        raft.events.clear()
        response = await controller.alter_partition(alter_partition_request(leader_epoch_of_1=5))
        assert response.error_code == 0
        assert codes_of(response) == {("orders", 0): 0, ("orders", 1): FencedLeaderEpochError.code,
                                      ("nowhere", 0): UnknownTopicError.code}
        assert raft.events.count("topic:orders") == 1, "one command per change"
        # a switch would have been submitted before the per-change commands, so it would be applied by now
        assert raft.syncobj.getCodeVersion() == 0, "switched before the brokers reported they run the version"

        for node_id in (1, 2, 3):  # every broker's heartbeat reports the version: the next batch switches
            controller.heartbeat(protocol.BrokerHeartbeatRequest(node_id, INCARNATION, RAFT_CODE_VERSION))
        raft.events.clear()
        response = await controller.alter_partition(alter_partition_request(leader_epoch_of_1=5))
        assert response.error_code == 0
        for _ in range(200):
            if raft.syncobj.getCodeVersion() == RAFT_CODE_VERSION:
                break
            await asyncio.sleep(0.05)
        assert raft.syncobj.getCodeVersion() == RAFT_CODE_VERSION
        await asyncio.sleep(0.05)  # the switch's callback reaches the loop
        raft.events.clear()
        request = protocol.AlterPartitionRequest(1, [protocol.AlterPartitionTopic("orders", [
            protocol.AlterPartitionItem(1, 0, 0, [1, 2]), protocol.AlterPartitionItem(2, 0, 0, [1, 3])])])
        response = await controller.alter_partition(request)
        assert codes_of(response) == {("orders", 1): 0, ("orders", 2): 0}
        assert raft.events == ["topic:orders"], "one command for both changes"
        assert [p.isr for p in raft.state.topics["orders"].partitions] == [(1, 2), (1, 2), (1, 3)]

    try:
        asyncio.run(scenario())
    finally:
        raft.close()
