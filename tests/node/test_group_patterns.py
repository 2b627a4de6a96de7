"""Subscription patterns in the coordinator (node/coordinator/consumer_group.py): RE2, so evaluation is linear in
the topic name whatever the pattern; refused with a typed error when RE2 cannot take them; evaluated once per
distinct subscription in a rebalance. The broker-level flood test is in test_bounds.py."""

from __future__ import annotations

import pytest
from rill.client.errors import InvalidConfigError, InvalidRegularExpressionError
from rill.node.coordinator.assignors import DEFAULT_ASSIGNOR
from rill.node.coordinator.consumer_group import ConsumerGroup, Member, compiled_pattern


def join(group: ConsumerGroup, member_id: str, pattern: str, partition_counts: dict[str, int]) -> None:
    group.heartbeat(member_id, 0, "client", [], pattern, DEFAULT_ASSIGNOR, 10_000, set(), partition_counts)


def test_a_backtracking_pattern_is_matched_in_linear_time():
    """Python's re needs about 2**200 steps for this match; RE2 answers at once."""
    assert compiled_pattern("(a+)+b").fullmatch("a" * 200) is None
    assert compiled_pattern("(a|aa)+$").fullmatch("a" * 200) is not None


@pytest.mark.parametrize("pattern", ["orders-(", "(?=orders).*", r"(\w)\1", r"\pL{1000}"])
def test_patterns_re2_cannot_take_are_refused_with_a_typed_error(pattern):
    with pytest.raises(InvalidRegularExpressionError) as refused:
        join(ConsumerGroup("g"), "m", pattern, {"orders": 1})
    assert isinstance(refused.value, InvalidConfigError), "still an InvalidConfigError, as before RE2"
    assert repr(pattern) in str(refused.value)


def test_members_that_subscribe_alike_share_one_evaluation(monkeypatch):
    counts = {f"orders-{n}": 1 for n in range(200)}
    group = ConsumerGroup("g")
    for n in range(20):
        join(group, f"member-{n}", "orders-.*", counts)
    evaluated: list[str] = []
    subscribes_to = Member.subscribes_to
    monkeypatch.setattr(Member, "subscribes_to", lambda self, topic: evaluated.append(topic) or subscribes_to(
        self, topic))
    group.rebalance(counts)
    assert len(evaluated) == len(counts), "each topic once, not once per member"
    assert sum(len(partitions) for partitions in group.target.values()) == len(counts)
