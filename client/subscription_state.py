"""What a consumer reads: its subscription, the partitions it reads now, and its position in each.

A partition's position is the offset of the next record ``poll`` returns:
it moves only past records poll handed to the application, or by a seek
(which includes the reset to ``auto_offset_reset``), so a commit of
positions never passes a record the application did not get. None means
not known yet (a reset is due). Paused partitions keep their position and
are not fetched. Not thread-safe, like the consumer that owns it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rill.client import protocol
from rill.client.errors import InvalidConfigError
from rill.client.types import TopicPartition


class PartitionState:
    """One partition the consumer reads: its position (None until known), whether it is paused, and how
    many times it was sought (the fetcher drops what it fetched before a seek, even one to the same offset)."""

    __slots__ = ("paused", "position", "seeks")

    def __init__(self) -> None:
        self.position: int | None = None
        self.paused = False
        self.seeks = 0


class SubscriptionState:
    """Subscribed topics and pattern (or none: partitions assigned by hand), and the partitions read now."""

    def __init__(self) -> None:
        self.topics: frozenset[str] = frozenset()
        self.pattern: re.Pattern | None = None
        self._partitions: dict[TopicPartition, PartitionState] = {}

    # ---- the subscription -----------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return bool(self.topics) or self.pattern is not None

    def subscribe(self, topics: Iterable[str], pattern: str | None) -> None:
        self.topics = frozenset(topics)
        self.pattern = re.compile(pattern) if pattern else None

    def matching_topics(self, known_topics: Iterable[str]) -> set[str]:
        """The subscribed topics, and those of ``known_topics`` the pattern matches (never internal ones)."""
        topics = set(self.topics)
        if self.pattern is not None:
            topics |= {name for name in known_topics
                       if name not in protocol.INTERNAL_TOPICS and self.pattern.fullmatch(name)}
        return topics

    # ---- the partitions read now --------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions``, dropping the subscription; kept partitions keep their positions."""
        self.topics = frozenset()
        self.pattern = None
        self.set_assignment(partitions)

    def set_assignment(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions``; kept partitions keep their positions, new ones start unknown."""
        wanted = set(partitions)
        self._partitions = {tp: self._partitions.get(tp) or PartitionState() for tp in wanted}

    def add(self, partition: TopicPartition) -> None:
        self._partitions.setdefault(partition, PartitionState())

    def remove(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)

    def assigned(self) -> set[TopicPartition]:
        return set(self._partitions)

    def __contains__(self, partition: TopicPartition) -> bool:
        return partition in self._partitions

    def __len__(self) -> int:
        return len(self._partitions)

    def state(self, partition: TopicPartition) -> PartitionState:
        """The partition's state; InvalidConfigError if the consumer does not read it."""
        state = self._partitions.get(partition)
        if state is None:
            raise InvalidConfigError(f"{partition.topic}-{partition.partition} is not assigned to this consumer")
        return state

    def check_assigned(self, partitions: Iterable[TopicPartition]) -> None:
        for partition in partitions:
            self.state(partition)

    # ---- positions ------------------------------------------------------------------

    def seek(self, partition: TopicPartition, offset: int | None) -> None:
        """Set the position (None: reset it per auto_offset_reset before the next fetch)."""
        state = self.state(partition)
        state.position = offset
        state.seeks += 1

    def positions(self) -> dict[TopicPartition, int]:
        """The position of every partition that has one: what a commit of "everything consumed" sends."""
        return {tp: state.position for tp, state in self._partitions.items() if state.position is not None}

    def missing_positions(self) -> list[TopicPartition]:
        return sorted(tp for tp, state in self._partitions.items() if state.position is None)

    def fetchable(self) -> Iterator[tuple[TopicPartition, PartitionState]]:
        """Partitions to fetch and return records of: not paused, with a known position."""
        for tp, state in self._partitions.items():
            if not state.paused and state.position is not None:
                yield tp, state

    def set_paused(self, partitions: Iterable[TopicPartition], paused: bool) -> None:
        """Pause or resume every one of ``partitions``, or none if one is not assigned."""
        states = [self.state(partition) for partition in partitions]
        for state in states:
            state.paused = paused
