"""The metadata events that drive failover announce a change only once it can be read.

A broker applies a topic's new partition states (who leads, at which epoch)
when the Raft state machine reports ``topic:<name>``; the report is handed to
the asyncio loop with ``call_soon_threadsafe`` and the loop then reads
``state.topics``. If the loop may run before the command has stored the new
topics, the broker applies the old state and never hears of the change
again: a new leader that does not know it leads (NotLeader to every produce,
while every broker's metadata names it leader). Here the callback reads the
state at once, as the loop may, after each command that moves leaders.
"""

from __future__ import annotations

import pytest
from rill.node.metadata.state import (
    BrokerRegistration,
    MetadataState,
    PartitionState,
    TopicState,
)

INCARNATION = 100


@pytest.fixture
def state_and_seen():
    """A state machine of three brokers and one RF=3 topic led by broker 1; ``seen`` collects, per
    ``topic:`` event, the topic as the state shows it when the event fires."""
    seen: list[TopicState | None] = []
    holder: dict[str, MetadataState] = {}

    def on_change(event: str) -> None:
        if event.startswith("topic:"):
            seen.append(holder["state"].topics.get(event.removeprefix("topic:")))

    state = holder["state"] = MetadataState(on_change)
    for node_id in (1, 2, 3):
        state.register_broker(BrokerRegistration(node_id, "127.0.0.1", 9000 + node_id, INCARNATION), _doApply=True)
    state.create_topic(TopicState("orders", "id-1", {}, (PartitionState((1, 2, 3), 1, 0, (1, 2, 3)),)),
                       _doApply=True)
    seen.clear()
    return state, seen


def test_failover_fencing_event_shows_the_new_leader(state_and_seen):
    state, seen = state_and_seen
    assert state.fence_broker(1, INCARNATION, _doApply=True) == 0
    after = state.topics["orders"].partitions[0]
    assert (after.leader, after.leader_epoch) == (2, 1)
    assert seen, "fencing the leader reports the topic as changed"
    assert all(topic is not None and topic.partitions[0] == after for topic in seen), (
        f"when the event fires the state must already hold {after}; it held {seen}")


def test_failover_preferred_election_event_shows_the_new_leader(state_and_seen):
    state, seen = state_and_seen
    state.fence_broker(1, INCARNATION, _doApply=True)
    state.register_broker(BrokerRegistration(1, "127.0.0.1", 9001, INCARNATION + 1), _doApply=True)
    state.alter_isr("orders", 0, 2, 1, state.topics["orders"].partitions[0].partition_epoch, (1, 2, 3),
                    _doApply=True)
    seen.clear()
    assert state.elect_preferred_leaders(_doApply=True) == 1
    after = state.topics["orders"].partitions[0]
    assert after.leader == 1
    assert seen and all(topic is not None and topic.partitions[0] == after for topic in seen), (
        f"when the event fires the state must already hold {after}; it held {seen}")


def test_failover_reregistration_event_shows_the_new_state(state_and_seen):
    state, seen = state_and_seen
    state.register_broker(BrokerRegistration(1, "127.0.0.1", 9001, INCARNATION + 1), _doApply=True)
    after = state.topics["orders"].partitions[0]
    assert after.leader != 1 or after.leader_epoch > 0, "a restarted leader loses its old leadership first"
    assert seen and all(topic is not None and topic.partitions[0] == after for topic in seen), (
        f"when the event fires the state must already hold {after}; it held {seen}")
