"""Consumer lag, computed by the coordinator: per group and partition, in records and in seconds; a state per group.

For each partition a group committed an offset in or a member holds:

- **lag** (records) = the leader's high watermark minus the committed offset
  (None when nothing is committed or the log end is unknown: topic gone,
  leader unreachable);
- **lag_seconds** = now minus the timestamp of the first record not committed
  (the record at the committed offset, or the first one after it in a
  compacted gap, or at the log start if retention removed it). Records carry
  the producer's timestamp (CreateTime), so this is "how old is the oldest
  record the group has not committed". 0 when the group is caught up
  (committed >= log end) or the lag is unknown, and never negative (a
  producer's clock ahead of the broker's counts as 0);
- **owner**: the member granted the partition, else the one still reporting
  it owned while it revokes it; None when no member holds it.

The group's **lag state** is the worst of its partitions' states, with
W = ``group_stalled_after_ms``:

- ``STALLED``: the partition has had lag > 0 and the same committed offset in
  every reading for at least W. Nothing is being committed while records wait,
  whether the lag is rising (producers still write) or standing (they
  stopped): a member that hangs, crashes without leaving or stops committing,
  or a group with no members left while its topics grow.
- ``CATCHING_UP``: not stalled (commits move), but the oldest uncommitted
  record is W or more old (lag_seconds >= W): the group works through a
  backlog, or falls behind while still committing.
- ``OK``: lag 0, or unknown (nothing committed), or commits move and the oldest
  uncommitted record is younger than W. A healthy consumer committing every
  few seconds stays OK as long as W is above its commit interval.

Readings are taken once a second (``LagMonitor.run_round``, a periodic duty
of the node) for the groups this broker coordinates, at most
``partitions_per_round`` partitions per round (groups beyond wait for the
next rounds, in turn); "since when has the committed offset stood still" is
kept per partition between rounds and lost when the coordinator moves (the
new one needs W before it calls a partition stalled). DescribeGroup reads
fresh values and judges them against that history without changing it.
Not thread-safe: the broker's loop only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rill.client.types import TopicPartition
from rill.node.coordinator.consumer_group import ConsumerGroup
from rill.node.coordinator.offset_timestamps import NO_TIMESTAMP, Found, OffsetTimestampLookup, Wanted

OK, CATCHING_UP, STALLED = "OK", "CATCHING_UP", "STALLED"
LAG_STATES = (OK, CATCHING_UP, STALLED)  # from best to worst
LAG_INTERVAL_MS = 1_000  # how often the node's duty takes readings
LAG_PARTITIONS_PER_ROUND = 10_000  # partitions read per round, over all groups
NOTHING_COMMITTED = -1


@dataclass(frozen=True)
class PartitionLagReading:
    """A group's lag on one partition at one moment (see the module docstring for each value)."""

    partition: TopicPartition
    committed_offset: int | None
    log_end_offset: int  # -1: unknown
    lag_seconds: float
    owner_member_id: str | None
    owner_client_id: str | None

    @property
    def lag(self) -> int | None:
        if self.committed_offset is None or self.log_end_offset < 0:
            return None
        return self.log_end_offset - self.committed_offset


@dataclass(frozen=True)
class GroupLag:
    """A group's readings, sorted by partition, and its lag state."""

    group_id: str
    state: str
    partitions: list[PartitionLagReading]


@dataclass(frozen=True)
class _Snapshot:
    """What a reading needs from a group, taken before awaiting the leaders (commits may land meanwhile)."""

    group_id: str
    committed: dict[TopicPartition, int]
    owners: dict[TopicPartition, tuple[str, str]]  # member id, client id

    @classmethod
    def of(cls, group: ConsumerGroup) -> _Snapshot:
        owners: dict[TopicPartition, tuple[str, str]] = {}
        for member in group.members.values():  # revoking first, so that the granted member wins
            for tp in member.owned - member.granted:
                owners.setdefault(tp, (member.member_id, member.client_id))
        for member in group.members.values():
            for tp in member.granted:
                owners[tp] = (member.member_id, member.client_id)
        return cls(group.group_id, {tp: committed.offset for tp, committed in group.offsets.items()}, owners)

    @property
    def wanted(self) -> set[Wanted]:
        partitions = set(self.committed) | set(self.owners)
        return {(tp, self.committed.get(tp, NOTHING_COMMITTED)) for tp in partitions}

    def readings(self, found: dict[Wanted, Found], now_ms: int) -> list[PartitionLagReading]:
        return [self._reading(entry, found.get(entry, (-1, NO_TIMESTAMP)), now_ms) for entry in sorted(self.wanted)]

    def _reading(self, entry: Wanted, answer: Found, now_ms: int) -> PartitionLagReading:
        tp, offset = entry
        log_end, timestamp = answer
        behind = offset != NOTHING_COMMITTED and 0 <= offset < log_end and timestamp != NO_TIMESTAMP
        seconds = max(0.0, (now_ms - timestamp) / 1000) if behind else 0.0
        member_id, client_id = self.owners.get(tp, (None, None))
        return PartitionLagReading(tp, None if offset == NOTHING_COMMITTED else offset, log_end, seconds,
                                   member_id, client_id)


class StallWatch:
    """Since when each group's partitions have stood still: same committed offset, lag > 0, reading after reading."""

    def __init__(self, stalled_after_ms: int):
        self._window_s = stalled_after_ms / 1000
        self._still_since: dict[str, dict[TopicPartition, tuple[int, float]]] = {}  # (committed, monotonic time)

    def observe(self, group_id: str, readings: list[PartitionLagReading], now_s: float) -> None:
        """Take a round's readings: a partition without lag, or whose committed offset moved, starts over."""
        before = self._still_since.get(group_id, {})
        still: dict[TopicPartition, tuple[int, float]] = {}
        for reading in readings:
            if reading.lag is None or reading.lag <= 0:
                continue
            since = before.get(reading.partition)
            same = since is not None and since[0] == reading.committed_offset
            still[reading.partition] = since if same else (reading.committed_offset, now_s)
        self._still_since[group_id] = still

    def state(self, group_id: str, readings: list[PartitionLagReading], now_s: float) -> str:
        """The group's lag state: the worst of its partitions' (the rule is in the module docstring)."""
        still = self._still_since.get(group_id, {})
        worst = OK
        for reading in readings:
            since = still.get(reading.partition)
            still_for_s = now_s - since[1] if since is not None and since[0] == reading.committed_offset else 0.0
            state = self._partition_state(reading, still_for_s)
            if LAG_STATES.index(state) > LAG_STATES.index(worst):
                worst = state
        return worst

    def _partition_state(self, reading: PartitionLagReading, still_for_s: float) -> str:
        if reading.lag is None or reading.lag <= 0:
            return OK
        if still_for_s >= self._window_s:
            return STALLED
        if reading.lag_seconds >= self._window_s:
            return CATCHING_UP
        return OK

    def keep_only(self, group_ids: set[str]) -> None:
        for group_id in set(self._still_since) - group_ids:
            del self._still_since[group_id]


class LagMonitor:
    """Reads the lag of the groups a coordinator holds: every round (``latest``), or on demand (``describe``)."""

    def __init__(self, lookup: OffsetTimestampLookup, stalled_after_ms: int,
                 partitions_per_round: int = LAG_PARTITIONS_PER_ROUND):
        self._lookup = lookup
        self._watch = StallWatch(stalled_after_ms)
        self._partitions_per_round = partitions_per_round
        self._resume_after = ""  # the group id the last round stopped at, when not every group fitted
        self.latest: dict[str, GroupLag] = {}  # group id -> its last round's readings (the /metrics gauges)

    async def describe(self, group: ConsumerGroup) -> GroupLag:
        """Fresh readings of one group, judged against the rounds' history (which they leave unchanged)."""
        snapshot = _Snapshot.of(group)
        found = await self._lookup.lookup(snapshot.wanted)
        readings = snapshot.readings(found, _now_ms())
        return GroupLag(group.group_id, self._watch.state(group.group_id, readings, time.monotonic()), readings)

    async def run_round(self, groups: list[ConsumerGroup]) -> None:
        """Read the next groups in turn (within the partition budget); forget groups no longer held."""
        held = {group.group_id for group in groups}
        self._watch.keep_only(held)
        for group_id in set(self.latest) - held:
            del self.latest[group_id]
        snapshots = [_Snapshot.of(group) for group in self._next_groups(groups)]
        found = await self._lookup.lookup(set().union(*(snapshot.wanted for snapshot in snapshots)))
        now_ms, now_s = _now_ms(), time.monotonic()
        for snapshot in snapshots:
            readings = snapshot.readings(found, now_ms)
            self._watch.observe(snapshot.group_id, readings, now_s)
            self.latest[snapshot.group_id] = GroupLag(snapshot.group_id,
                                                      self._watch.state(snapshot.group_id, readings, now_s), readings)

    def _next_groups(self, groups: list[ConsumerGroup]) -> list[ConsumerGroup]:
        """Groups after the last round's stopping point, then from the start, while the budget lasts (at least
        one group)."""
        ordered = sorted(groups, key=lambda group: group.group_id)
        ordered = ([group for group in ordered if group.group_id > self._resume_after]
                   + [group for group in ordered if group.group_id <= self._resume_after])
        picked: list[ConsumerGroup] = []
        budget = self._partitions_per_round
        for group in ordered:
            size = len(set(group.offsets).union(*(member.held for member in group.members.values())))
            if picked and size > budget:
                break
            picked.append(group)
            budget -= size
        self._resume_after = picked[-1].group_id if len(picked) < len(ordered) else ""
        return picked


def _now_ms() -> int:
    return int(time.time() * 1000)
