"""A leader whose replica went offline (disk error) leaves the ISR; the controller elects another member."""

from __future__ import annotations

import pytest
from rill.client.errors import InvalidRequestError
from rill.node.metadata.state import (
    BrokerRegistration,
    MetadataState,
    PartitionState,
    TopicState,
)

INCARNATION = 100


@pytest.fixture
def state() -> MetadataState:
    """Three live brokers and one RF=3 topic led by broker 1, every replica in sync."""
    state = MetadataState(lambda event: None)
    for node_id in (1, 2, 3):
        state.register_broker(BrokerRegistration(node_id, "127.0.0.1", 9000 + node_id, INCARNATION), _doApply=True)
    state.create_topic(TopicState("orders", "id-1", {}, (PartitionState((1, 2, 3), 1, 0, (1, 2, 3)),)),
                       _doApply=True)
    return state


def test_an_isr_without_the_leader_elects_another_member(state):
    assert state.alter_isr("orders", 0, 1, 0, 0, (2, 3), _doApply=True) == 0
    after = state.topics["orders"].partitions[0]
    assert (after.leader, after.isr) == (2, (2, 3))
    assert after.leader_epoch == 1, "a new leader means a new leader epoch: the old one is fenced"


def test_the_last_in_sync_replica_cannot_leave(state):
    assert state.alter_isr("orders", 0, 1, 0, 0, (1,), _doApply=True) == 0
    assert state.alter_isr("orders", 0, 1, 0, 1, (), _doApply=True) == InvalidRequestError.code
    assert state.topics["orders"].partitions[0].leader == 1


def test_a_stale_leader_cannot_step_down_for_the_current_one(state):
    state.alter_isr("orders", 0, 1, 0, 0, (2, 3), _doApply=True)
    assert state.alter_isr("orders", 0, 1, 0, 1, (3,), _doApply=True) != 0
    assert state.topics["orders"].partitions[0].leader == 2
