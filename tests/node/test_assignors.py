"""The consumer-group partition assignors: Kafka's layouts, validity on varied inputs, and sticky's stickiness."""

from __future__ import annotations

import random

import pytest
from rill.client.errors import InvalidConfigError
from rill.client.types import TopicPartition
from rill.node.coordinator.assignors import (
    ASSIGNORS,
    DEFAULT_ASSIGNOR,
    Assignment,
    assign,
)


def tps(topic: str, *partitions: int) -> set[TopicPartition]:
    """The given partitions of one topic."""
    return {TopicPartition(topic, partition) for partition in partitions}


def subs(**topics: str) -> dict[str, frozenset[str]]:
    """Subscriptions from member=\"topic,topic\" keywords."""
    return {member: frozenset(filter(None, names.split(","))) for member, names in topics.items()}


def uniform(members: int, topics: str) -> dict[str, frozenset[str]]:
    """``members`` members m0, m1, ... all subscribed to the comma-separated ``topics``."""
    return {f"m{index}": frozenset(topics.split(",")) for index in range(members)}


def check_valid(result: Assignment, subscriptions: dict[str, frozenset[str]], counts: dict[str, int]) -> None:
    """Every member is a key; each partition of a subscribed, existing topic goes to exactly one subscriber."""
    assert set(result) == set(subscriptions)
    owners: dict[TopicPartition, str] = {}
    for member, partitions in result.items():
        for partition in partitions:
            assert partition not in owners, f"{partition} given to {owners[partition]} and {member}"
            assert partition.topic in subscriptions[member], f"{member} got {partition} without subscribing"
            owners[partition] = member
    subscribed = set().union(*subscriptions.values()) if subscriptions else set()
    expected = {TopicPartition(topic, partition) for topic in subscribed for partition in range(counts.get(topic, 0))}
    assert set(owners) == expected


def loads(result: Assignment) -> list[int]:
    """How many partitions each member got."""
    return [len(partitions) for partitions in result.values()]


def moved(before: Assignment, after: Assignment) -> dict[TopicPartition, tuple[str | None, str]]:
    """Partitions whose owner changed: partition -> (old owner or None, new owner)."""
    old = {partition: member for member, partitions in before.items() for partition in partitions}
    return {partition: (old.get(partition), member) for member, partitions in after.items()
            for partition in partitions if old.get(partition) != member}


def random_case(rng: random.Random) -> tuple[dict[str, frozenset[str]], dict[str, int], Assignment]:
    """Varied inputs: random subscriptions (some to topics that do not exist), counts (some zero), and a
    ``current`` full of stale members, topics and out-of-range partitions."""
    topics = [f"t{index}" for index in range(rng.randint(1, 5))]
    counts = {topic: rng.randint(0, 12) for topic in topics}
    candidates = [*topics, "missing"]
    subscriptions = {f"m{index}": frozenset(rng.sample(candidates, rng.randint(0, len(candidates))))
                     for index in rng.sample(range(20), rng.randint(1, 8))}
    holders = [*subscriptions, "gone"]
    current: Assignment = {member: set() for member in holders}
    for topic in [*topics, "deleted"]:
        for partition in range(counts.get(topic, 3) + 2):
            if rng.random() < 0.8:
                current[rng.choice(holders)].add(TopicPartition(topic, partition))
    return subscriptions, counts, current


CASES = [random_case(random.Random(seed)) for seed in range(200)]


def test_constants() -> None:
    assert ASSIGNORS == ("range", "roundrobin", "sticky")
    assert DEFAULT_ASSIGNOR == "sticky"


def test_unknown_assignor_names_the_valid_ones() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        assign("cooperative", uniform(2, "t"), {"t": 4}, {})
    for name in ASSIGNORS:
        assert name in str(caught.value)


# range


def test_range_even_split() -> None:
    result = assign("range", uniform(3, "t"), {"t": 6}, {})
    assert result == {"m0": tps("t", 0, 1), "m1": tps("t", 2, 3), "m2": tps("t", 4, 5)}


def test_range_uneven_split_gives_the_first_members_one_extra() -> None:
    result = assign("range", uniform(3, "t"), {"t": 8}, {})
    assert result == {"m0": tps("t", 0, 1, 2), "m1": tps("t", 3, 4, 5), "m2": tps("t", 6, 7)}


def test_range_splits_each_topic_on_its_own() -> None:
    result = assign("range", uniform(2, "a,b"), {"a": 3, "b": 3}, {})
    assert result == {"m0": tps("a", 0, 1) | tps("b", 0, 1), "m1": tps("a", 2) | tps("b", 2)}


def test_range_different_subscriptions() -> None:
    result = assign("range", subs(x="a", y="a,b", z="b"), {"a": 4, "b": 2}, {})
    assert result == {"x": tps("a", 0, 1), "y": tps("a", 2, 3) | tps("b", 0), "z": tps("b", 1)}


def test_range_more_members_than_partitions() -> None:
    result = assign("range", uniform(3, "t"), {"t": 2}, {})
    assert result == {"m0": tps("t", 0), "m1": tps("t", 1), "m2": set()}


# roundrobin


def test_roundrobin_deals_over_all_topics() -> None:
    result = assign("roundrobin", uniform(2, "a,b"), {"a": 3, "b": 3}, {})
    assert result == {"m0": tps("a", 0, 2) | tps("b", 1), "m1": tps("a", 1) | tps("b", 0, 2)}


def test_roundrobin_skips_members_not_subscribed() -> None:
    """Kafka's documented example for RoundRobinAssignor with different subscriptions."""
    result = assign("roundrobin", subs(c0="t0", c1="t0,t1", c2="t0,t1,t2"), {"t0": 1, "t1": 2, "t2": 3}, {})
    assert result == {"c0": tps("t0", 0), "c1": tps("t1", 0), "c2": tps("t1", 1) | tps("t2", 0, 1, 2)}


def test_roundrobin_uneven_count() -> None:
    result = assign("roundrobin", uniform(3, "t"), {"t": 7}, {})
    assert result == {"m0": tps("t", 0, 3, 6), "m1": tps("t", 1, 4), "m2": tps("t", 2, 5)}


# every assignor


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_single_member_gets_everything(assignor: str) -> None:
    result = assign(assignor, {"only": frozenset({"a", "b"})}, {"a": 3, "b": 2}, {})
    assert result == {"only": tps("a", 0, 1, 2) | tps("b", 0, 1)}


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_topic_with_zero_partitions(assignor: str) -> None:
    assert assign(assignor, uniform(2, "t"), {"t": 0}, {}) == {"m0": set(), "m1": set()}


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_member_without_an_existing_topic_gets_an_empty_set(assignor: str) -> None:
    result = assign(assignor, subs(a="t", b="missing", c=""), {"t": 2}, {})
    assert result == {"a": tps("t", 0, 1), "b": set(), "c": set()}


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_no_members(assignor: str) -> None:
    assert assign(assignor, {}, {"t": 3}, {"gone": tps("t", 0)}) == {}


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_even_layout_is_balanced(assignor: str) -> None:
    result = assign(assignor, uniform(3, "t"), {"t": 6}, {})
    check_valid(result, uniform(3, "t"), {"t": 6})
    assert loads(result) == [2, 2, 2]


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_valid_on_varied_inputs(assignor: str) -> None:
    for subscriptions, counts, current in CASES:
        check_valid(assign(assignor, subscriptions, counts, current), subscriptions, counts)


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_deterministic_whatever_the_input_order(assignor: str) -> None:
    for subscriptions, counts, current in CASES:
        first = assign(assignor, subscriptions, counts, current)
        reordered = assign(assignor, dict(reversed(subscriptions.items())), dict(reversed(counts.items())),
                           dict(reversed(current.items())))
        assert reordered == first


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_eager_assignors_ignore_current(assignor: str) -> None:
    current = {"m0": tps("t", 0, 1, 2, 3, 4, 5)}
    assert assign(assignor, uniform(3, "t"), {"t": 6}, current) == assign(assignor, uniform(3, "t"), {"t": 6}, {})


# sticky


def test_sticky_from_scratch_is_balanced() -> None:
    result = assign("sticky", uniform(3, "a,b"), {"a": 4, "b": 3}, {})
    check_valid(result, uniform(3, "a,b"), {"a": 4, "b": 3})
    assert sorted(loads(result)) == [2, 2, 3]


def test_sticky_keeps_a_valid_balanced_assignment() -> None:
    current = {"m0": tps("t", 5, 1), "m1": tps("t", 0, 4), "m2": tps("t", 2, 3)}
    assert assign("sticky", uniform(3, "t"), {"t": 6}, current) == current


def test_sticky_is_a_fixed_point_of_itself() -> None:
    for subscriptions, counts, current in CASES:
        result = assign("sticky", subscriptions, counts, current)
        assert assign("sticky", subscriptions, counts, result) == result


def test_sticky_join_moves_only_what_the_newcomer_needs() -> None:
    before = assign("sticky", uniform(3, "t"), {"t": 12}, {})
    after = assign("sticky", uniform(4, "t"), {"t": 12}, before)
    changes = moved(before, after)
    assert len(changes) == 3
    assert {new for _, new in changes.values()} == {"m3"}
    assert loads(after) == [3, 3, 3, 3]
    assert all(after[member] <= before[member] for member in before)


def test_sticky_join_gives_up_highest_partitions_first() -> None:
    current = {"m0": tps("t", 0, 1, 2, 3), "m1": tps("t", 4, 5, 6, 7)}
    after = assign("sticky", uniform(3, "t"), {"t": 8}, current)
    assert after == {"m0": tps("t", 0, 1, 2), "m1": tps("t", 4, 5, 6), "m2": tps("t", 3, 7)}


def test_sticky_join_with_uneven_counts() -> None:
    before = assign("sticky", uniform(3, "t"), {"t": 10}, {})
    after = assign("sticky", uniform(4, "t"), {"t": 10}, before)
    assert len(moved(before, after)) == 2
    assert sorted(loads(after)) == [2, 2, 3, 3]
    assert all(after[member] <= before[member] for member in before)


def test_sticky_leave_moves_only_the_leavers_partitions() -> None:
    before = assign("sticky", uniform(4, "a,b"), {"a": 7, "b": 6}, {})
    remaining = uniform(4, "a,b")
    del remaining["m2"]
    after = assign("sticky", remaining, {"a": 7, "b": 6}, before)
    check_valid(after, remaining, {"a": 7, "b": 6})
    assert set(moved(before, after)) == before["m2"]
    assert all(after[member] >= before[member] for member in remaining)
    assert max(loads(after)) - min(loads(after)) <= 1


def test_sticky_ignores_stale_current_entries() -> None:
    current = {
        "gone": tps("t", 0, 1),  # member left
        "m0": tps("t", 2) | tps("deleted", 0) | tps("t", 9),  # topic deleted; partition out of range
        "m1": tps("t", 2, 3) | tps("other", 0),  # t-2 already kept by m0; no longer subscribed to "other"
    }
    after = assign("sticky", uniform(2, "t"), {"t": 4, "other": 1}, current)
    check_valid(after, uniform(2, "t"), {"t": 4, "other": 1})
    assert after == {"m0": tps("t", 0, 2), "m1": tps("t", 1, 3)}


def test_sticky_balances_an_overloaded_member() -> None:
    current = {"m0": tps("t", *range(9))}
    after = assign("sticky", uniform(3, "t"), {"t": 9}, current)
    assert after == {"m0": tps("t", 0, 1, 2), "m1": tps("t", 4, 6, 8), "m2": tps("t", 3, 5, 7)}


def test_sticky_balanced_within_one_for_uniform_subscriptions() -> None:
    rng = random.Random(7)
    for _ in range(200):
        topics = ",".join(f"t{index}" for index in range(rng.randint(1, 4)))
        subscriptions = uniform(rng.randint(1, 9), topics)
        counts = {topic: rng.randint(0, 20) for topic in topics.split(",")}
        holders = [*subscriptions, "gone"]
        current: Assignment = {member: set() for member in holders}
        for topic, count in counts.items():
            for partition in range(count):
                if rng.random() < 0.7:
                    current[rng.choice(holders[:rng.randint(1, len(holders))])].add(TopicPartition(topic, partition))
        after = assign("sticky", subscriptions, counts, current)
        check_valid(after, subscriptions, counts)
        assert max(loads(after)) - min(loads(after)) <= 1


def test_sticky_different_subscriptions_put_constrained_topics_first() -> None:
    after = assign("sticky", subs(a="t1,t2", b="t2"), {"t1": 2, "t2": 2}, {})
    assert after == {"a": tps("t1", 0, 1), "b": tps("t2", 0, 1)}


def test_sticky_different_subscriptions_rebalances_through_shared_topics() -> None:
    current = {"a": tps("t1", 0, 1) | tps("t2", 0, 1, 2, 3)}
    after = assign("sticky", subs(a="t1,t2", b="t2"), {"t1": 2, "t2": 4}, current)
    assert after == {"a": tps("t1", 0, 1) | tps("t2", 0), "b": tps("t2", 1, 2, 3)}


def test_sticky_different_subscriptions_stay_reasonably_balanced() -> None:
    rng = random.Random(11)
    for _ in range(100):
        topics = [f"t{index}" for index in range(4)]
        counts = {topic: rng.randint(4, 12) for topic in topics}
        subscriptions = {f"m{index}": frozenset(rng.sample(topics, rng.randint(2, 4))) for index in range(6)}
        after = assign("sticky", subscriptions, counts, {})
        check_valid(after, subscriptions, counts)
        for member, partitions in after.items():
            for theirs in after.values():
                if subscriptions[member] & {partition.topic for partition in theirs}:  # no useful move is left
                    assert len(partitions) >= len(theirs) - 1


def test_sticky_large_group() -> None:
    subscriptions = uniform(50, "a,b,c,d")
    counts = {"a": 400, "b": 300, "c": 200, "d": 100}
    first = assign("sticky", subscriptions, counts, {})
    assert set(loads(first)) == {20}
    grown = uniform(51, "a,b,c,d")
    after = assign("sticky", grown, counts, first)
    check_valid(after, grown, counts)
    assert sorted(set(loads(after))) == [19, 20]
    assert {new for _, new in moved(first, after).values()} == {"m50"}
    assert len(after["m50"]) == 19
