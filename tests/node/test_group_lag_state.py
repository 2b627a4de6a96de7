"""The coordinator's lag readings and lag-state rule (node/coordinator/lag.py), without brokers.

The rule, with W = group_stalled_after_ms: STALLED when a partition had lag and the same committed
offset for W; CATCHING_UP when commits move but the oldest uncommitted record is W old; else OK.
The leaders' answers come from a scripted lookup; the groups are the coordinator's real ConsumerGroup.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from rill.client import protocol
from rill.client.errors import InvalidConfigError, InvalidRequestError
from rill.client.types import TopicPartition
from rill.node.config import load_node_config
from rill.node.coordinator.consumer_group import CommittedOffset, ConsumerGroup
from rill.node.coordinator.lag import CATCHING_UP, OK, STALLED, LagMonitor, PartitionLagReading, StallWatch
from rill.node.coordinator.offset_timestamps import offset_timestamps

WINDOW_MS = 10_000
TP0, TP1 = TopicPartition("orders", 0), TopicPartition("orders", 1)


def reading(committed: int | None, log_end: int, lag_seconds: float = 0.0, tp: TopicPartition = TP0
            ) -> PartitionLagReading:
    return PartitionLagReading(tp, committed, log_end, lag_seconds, None, None)


def test_a_partition_without_lag_or_with_moving_commits_is_ok():
    watch = StallWatch(WINDOW_MS)
    for second, committed in enumerate(range(0, 300, 10)):  # 30 s of commits 10 records behind
        readings = [reading(committed, committed + 10, lag_seconds=0.5), reading(50, 50, tp=TP1)]
        watch.observe("g", readings, float(second))
        assert watch.state("g", readings, float(second)) == OK


def test_a_commit_standing_still_with_lag_for_the_window_is_stalled():
    watch = StallWatch(WINDOW_MS)
    states = []
    for second in range(13):  # the producer goes on, the committed offset stays at 100
        readings = [reading(100, 101 + 25 * second, lag_seconds=second), reading(7, 7, tp=TP1)]
        watch.observe("g", readings, float(second))
        states.append(watch.state("g", readings, float(second)))
    assert states[:10] == [OK] * 10
    assert states[10:] == [STALLED] * 3


def test_standing_lag_without_commits_is_stalled_too():
    watch = StallWatch(WINDOW_MS)
    for second in range(11):  # producers stopped: the lag stands at 5, nothing commits
        watch.observe("g", [reading(100, 105, lag_seconds=30.0 + second)], float(second))
    assert watch.state("g", [reading(100, 105, lag_seconds=41.0)], 10.0) == STALLED


def test_a_commit_or_a_caught_up_reading_starts_the_window_over():
    watch = StallWatch(WINDOW_MS)
    for second in range(9):
        watch.observe("g", [reading(100, 100 + second + 1, lag_seconds=second)], float(second))
    watch.observe("g", [reading(101, 110, lag_seconds=8.0)], 9.0)  # it committed
    assert watch.state("g", [reading(101, 112, lag_seconds=9.5)], 12.0) == OK
    watch.observe("g", [reading(101, 101)], 13.0)  # caught up
    watch.observe("g", [reading(101, 150, lag_seconds=1.0)], 14.0)
    assert watch.state("g", [reading(101, 160, lag_seconds=9.0)], 23.0) == OK
    assert watch.state("g", [reading(101, 160, lag_seconds=10.0)], 24.0) == STALLED


def test_moving_commits_behind_an_old_record_are_catching_up():
    watch = StallWatch(WINDOW_MS)
    readings = [reading(500, 2_000, lag_seconds=30.0), reading(0, 0, tp=TP1)]
    watch.observe("g", readings, 0.0)
    assert watch.state("g", readings, 0.0) == CATCHING_UP
    readings = [reading(1_900, 2_000, lag_seconds=9.9), reading(0, 0, tp=TP1)]
    watch.observe("g", readings, 1.0)
    assert watch.state("g", readings, 1.0) == OK


def test_unknown_lag_is_ok_and_the_worst_partition_decides():
    watch = StallWatch(WINDOW_MS)
    unknown = [reading(None, 500), reading(3, -1, tp=TP1)]  # nothing committed; log end unknown
    assert [r.lag for r in unknown] == [None, None]
    assert watch.state("g", unknown, 0.0) == OK
    mixed = [reading(0, 10, lag_seconds=11.0), reading(5, 6, lag_seconds=1.0, tp=TP1)]
    assert watch.state("g", mixed, 0.0) == CATCHING_UP


class ScriptedLookup:
    """Answers like partition leaders would: (high watermark, timestamp at the offset) per (partition, offset)."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.asked: list[set] = []

    async def lookup(self, wanted):
        self.asked.append(set(wanted))
        return {entry: self.answers[entry] for entry in wanted if entry in self.answers}


def group_with(group_id: str, offsets: dict[TopicPartition, int]) -> ConsumerGroup:
    group = ConsumerGroup(group_id)
    group.offsets = {tp: CommittedOffset(offset, "") for tp, offset in offsets.items()}
    return group


def join(group: ConsumerGroup, member_id: str, client_id: str, owned: set[TopicPartition]) -> None:
    group.heartbeat(member_id, 0, client_id, ["orders"], "", "sticky", 30_000, owned, {"orders": 2})


def test_readings_carry_records_seconds_and_owner():
    now_ms = int(time.time() * 1000)
    group = group_with("g", {TP0: 40, TP1: 90})
    join(group, "member-a", "client-a", {TP0, TP1})
    lookup = ScriptedLookup({(TP0, 40): (100, now_ms - 20_000), (TP1, 90): (90, -1)})
    lag = asyncio.run(LagMonitor(lookup, WINDOW_MS).describe(group))
    first, second = lag.partitions
    assert (first.partition, first.committed_offset, first.log_end_offset, first.lag) == (TP0, 40, 100, 60)
    assert 20.0 <= first.lag_seconds < 25.0
    assert (second.lag, second.lag_seconds) == (0, 0.0)
    assert {(r.owner_member_id, r.owner_client_id) for r in lag.partitions} == {("member-a", "client-a")}
    assert lag.state == CATCHING_UP


def test_a_producer_clock_ahead_gives_zero_seconds_and_unknown_leaders_unknown_lag():
    future_ms = int(time.time() * 1000) + 60_000
    group = group_with("g", {TP0: 1, TP1: 2})
    lag = asyncio.run(LagMonitor(ScriptedLookup({(TP0, 1): (5, future_ms)}), WINDOW_MS).describe(group))
    assert [(r.lag, r.lag_seconds, r.owner_member_id) for r in lag.partitions] == [(4, 0.0, None), (None, 0.0, None)]


def test_a_round_reads_within_its_partition_budget_taking_groups_in_turn():
    groups = [group_with(f"g{index}", {TP0: 1, TP1: 1}) for index in range(5)]
    lookup = ScriptedLookup({(TP0, 1): (1, -1), (TP1, 1): (1, -1)})
    monitor = LagMonitor(lookup, WINDOW_MS, partitions_per_round=4)
    seen = []
    for _ in range(3):
        asyncio.run(monitor.run_round(groups))
        seen.append(sorted(monitor.latest))
    assert seen == [["g0", "g1"], ["g0", "g1", "g2", "g3"], ["g0", "g1", "g2", "g3", "g4"]]
    asyncio.run(monitor.run_round(groups[1:]))  # g0 moved to another coordinator
    assert "g0" not in monitor.latest and all(lag.state == OK for lag in monitor.latest.values())


def test_offset_timestamps_refuses_too_many_partitions():
    many = [protocol.OffsetTimestampPartition(0, 0)] * (protocol.OFFSET_TIMESTAMPS_MAX_PARTITIONS + 1)
    request = protocol.OffsetTimestampsRequest([protocol.OffsetTimestampTopic("orders", many)])
    with pytest.raises(InvalidRequestError, match="more than"):
        asyncio.run(offset_timestamps(None, request))


@pytest.mark.parametrize("value", [0, -5])
def test_the_stall_window_must_be_positive(value):
    with pytest.raises(InvalidConfigError, match="group_stalled_after_ms"):
        load_node_config(None, {"node_id": 1, "group_stalled_after_ms": value})
