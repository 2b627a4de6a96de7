"""Consumer-group partition assignors: which member of a group reads which partitions.

The group coordinator calls :func:`assign` with each member's subscribed topics, the partition count of
each existing topic and the previous target assignment. The strategies follow Kafka's: ``range``
(contiguous ranges per topic), ``roundrobin`` (every partition dealt over the members in turn) and
``sticky`` (balanced, and moving as few partitions as balance allows, like Kafka's uniform and
cooperative-sticky assignors). All are deterministic: they sort member ids, topics and partitions and
never depend on the iteration order of a set or of a dict given to them.
"""

from __future__ import annotations

import heapq
from bisect import insort

from rill.client.errors import InvalidConfigError
from rill.client.types import TopicPartition

Assignment = dict[str, set[TopicPartition]]
"""Member id -> the partitions it gets."""

Group = tuple[str, ...]
"""The sorted ids of the members subscribed to a topic: who may own that topic's partitions."""

ASSIGNORS: tuple[str, ...] = ("range", "roundrobin", "sticky")
DEFAULT_ASSIGNOR = "sticky"

_MAX_BALANCE_ROUNDS = 16
"""Cap on sticky balancing passes; each pass ends when no member has a useful move, so few are ever needed."""


def assign(assignor: str, subscriptions: dict[str, frozenset[str]], partition_counts: dict[str, int],
           current: Assignment) -> Assignment:
    """Each member's partitions under the named strategy; every member is a key, possibly with an empty set.

    Topics missing from ``partition_counts`` do not exist yet and are ignored. ``current`` (the previous
    target assignment, stale entries allowed) only matters to ``sticky``. Raises InvalidConfigError for an
    unknown assignor name.
    """
    if assignor not in ASSIGNORS:
        raise InvalidConfigError(f"unknown partition assignor {assignor!r}; valid ones: {', '.join(ASSIGNORS)}")
    members = sorted(subscriptions)
    groups = _groups(subscriptions, partition_counts)
    if assignor == "range":
        return _range(members, groups, partition_counts)
    if assignor == "roundrobin":
        return _roundrobin(members, groups, partition_counts)
    return _sticky(members, groups, partition_counts, current)


def _groups(subscriptions: dict[str, frozenset[str]], partition_counts: dict[str, int]) -> dict[str, Group]:
    """Topic -> its subscribers, for each subscribed topic that exists and has partitions, in topic order."""
    subscribers: dict[str, list[str]] = {}
    for member in sorted(subscriptions):
        for topic in subscriptions[member]:
            if partition_counts.get(topic, 0) > 0:
                subscribers.setdefault(topic, []).append(member)
    return {topic: tuple(subscribers[topic]) for topic in sorted(subscribers)}


def _empty(members: list[str]) -> Assignment:
    """An assignment giving every member nothing yet."""
    return {member: set() for member in members}


def _range(members: list[str], groups: dict[str, Group], partition_counts: dict[str, int]) -> Assignment:
    """Kafka's RangeAssignor: per topic, contiguous ranges to its subscribers by id, the first ones one extra."""
    assignment = _empty(members)
    for topic, group in groups.items():
        share, extra = divmod(partition_counts[topic], len(group))
        start = 0
        for index, member in enumerate(group):
            end = start + share + (index < extra)
            assignment[member].update(TopicPartition(topic, partition) for partition in range(start, end))
            start = end
    return assignment


def _roundrobin(members: list[str], groups: dict[str, Group], partition_counts: dict[str, int]) -> Assignment:
    """Kafka's RoundRobinAssignor: partitions in (topic, partition) order dealt over the members by id in a
    circle, skipping members that do not subscribe to the partition's topic."""
    assignment = _empty(members)
    turn = 0
    for topic, group in groups.items():
        subscribed = set(group)
        for partition in range(partition_counts[topic]):
            while members[turn % len(members)] not in subscribed:
                turn += 1
            assignment[members[turn % len(members)]].add(TopicPartition(topic, partition))
            turn += 1
    return assignment


def _sticky(members: list[str], groups: dict[str, Group], partition_counts: dict[str, int],
            current: Assignment) -> Assignment:
    """Keep each member's still-valid current partitions, hand out the rest to the least loaded, then balance."""
    state = _StickyState(members, groups)
    state.keep(current, partition_counts)
    state.fill(partition_counts)
    state.balance()
    return state.assignment()


class _StickyState:
    """The sticky assignor's working assignment: each member's partitions, grouped by who may own them.

    Grouping by :data:`Group` lets a move look for a receiver once per group instead of once per topic;
    with uniform subscriptions there is a single group. Each group's list is kept sorted so a member gives
    up its highest-numbered partition first.
    """

    def __init__(self, members: list[str], groups: dict[str, Group]) -> None:
        self.groups = groups
        self.owned: dict[str, dict[Group, list[TopicPartition]]] = {member: {} for member in members}
        self.count = dict.fromkeys(members, 0)
        self.claimed: set[TopicPartition] = set()

    def claim(self, member: str, partition: TopicPartition) -> None:
        """Give ``partition`` to ``member``, keeping its group's list sorted."""
        insort(self.owned[member].setdefault(self.groups[partition.topic], []), partition)
        self.count[member] += 1
        self.claimed.add(partition)

    def keep(self, current: Assignment, partition_counts: dict[str, int]) -> None:
        """Re-claim the valid part of ``current``: member present and subscribed, partition existing, and not
        already kept by a member earlier in id order."""
        for member in sorted(set(current) & set(self.owned)):
            for partition in sorted(current[member]):
                group = self.groups.get(partition.topic, ())
                if (member in group and 0 <= partition.partition < partition_counts[partition.topic]
                        and partition not in self.claimed):
                    self.claim(member, partition)

    def fill(self, partition_counts: dict[str, int]) -> None:
        """Give each unowned partition to its least loaded eligible member (fewest partitions, then lowest id).

        Topics with the fewest eligible members go first, as they have the least choice. Within one topic
        only that topic's members gain partitions, so a heap of their loads stays exact.
        """
        for topic in sorted(self.groups, key=lambda name: (len(self.groups[name]), name)):
            every = (TopicPartition(topic, partition) for partition in range(partition_counts[topic]))
            unowned = [partition for partition in every if partition not in self.claimed]
            if not unowned:
                continue
            loads = [(self.count[member], member) for member in self.groups[topic]]
            heapq.heapify(loads)
            for partition in unowned:
                count, member = heapq.heappop(loads)
                self.claim(member, partition)
                heapq.heappush(loads, (count + 1, member))

    def balance(self) -> None:
        """Move partitions from the fullest members to eligible members with at least two fewer, until no
        move helps (each move lowers the sum of squared loads, so this ends; rounds are capped regardless)."""
        for _ in range(_MAX_BALANCE_ROUNDS):
            if not self._balance_round():
                return

    def _balance_round(self) -> bool:
        """One pass, always from the fullest member that can give; True if anything moved.

        A member with no useful move leaves the pass until its load changes; the next round retries it,
        since a later giver may have dropped low enough to receive from it.
        """
        fullest = [(-count, member) for member, count in self.count.items()]
        heapq.heapify(fullest)
        moved = False
        while fullest:
            negative_count, giver = heapq.heappop(fullest)
            if -negative_count != self.count[giver]:
                continue  # stale: a fresher entry for this member is in the heap
            move = self._best_move(giver)
            if move is None:
                continue
            group, receiver = move
            self._move(giver, group, receiver)
            heapq.heappush(fullest, (-self.count[giver], giver))
            heapq.heappush(fullest, (-self.count[receiver], receiver))
            moved = True
        return moved

    def _best_move(self, giver: str) -> tuple[Group, str] | None:
        """The group and receiver of the giver's best move: the least loaded member eligible for one of its
        partitions, if that member has at least two fewer partitions (else the move would not narrow the spread)."""
        best: tuple[int, str, Group] | None = None
        for group, partitions in self.owned[giver].items():
            if partitions:
                receiver = min(group, key=lambda member: (self.count[member], member))
                candidate = (self.count[receiver], receiver, group)
                if candidate[0] + 1 < self.count[giver] and (best is None or candidate < best):
                    best = candidate
        return None if best is None else (best[2], best[1])

    def _move(self, giver: str, group: Group, receiver: str) -> None:
        """Move the giver's highest-numbered partition of ``group`` to ``receiver``."""
        partition = self.owned[giver][group].pop()
        self.count[giver] -= 1
        self.claimed.discard(partition)
        self.claim(receiver, partition)

    def assignment(self) -> Assignment:
        """The working assignment as member id -> set of partitions."""
        return {member: {partition for partitions in groups.values() for partition in partitions}
                for member, groups in self.owned.items()}
