"""One consumer group in its coordinator's memory: members, target assignment, committed offsets.

Membership follows Kafka's KIP-848: the coordinator computes the target
assignment whenever membership, subscriptions or the subscribed topics
change (each such change bumps the group epoch), and hands each member its
share over heartbeats, incrementally: a member keeps what does not move,
and a partition that moves goes to its new owner only once the old owner
stopped reporting it as owned (it revoked it, committing first). Members are
fenced by member id and member epoch.

Membership lives in memory only (docs/architecture.md, 10.5): after a coordinator
failover members join again, reporting what they own, and keep what no one
else holds. Committed offsets are replayed from ``__consumer_offsets``.
Not thread-safe: used on the broker's asyncio loop only.

Subscription patterns are RE2 expressions (google-re2), as KIP-848 has the
coordinator evaluate them with RE2/J: matching takes time linear in the
topic name's length whatever the pattern, so a member cannot stall the
broker's loop with catastrophic backtracking (``(a+)+b``), which Python's
``re`` has no timeout against. A compiled pattern may use at most
``PATTERN_MAX_MEM_BYTES``; RE2 refuses a bigger one, and backreferences and
lookarounds, with InvalidRegularExpressionError. A rebalance evaluates each
distinct subscription once against the cluster's topics, however many
members share it.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import re2
from rill.client.errors import (
    FencedMemberEpochError,
    GroupNotEmptyError,
    InvalidConfigError,
    InvalidRegularExpressionError,
    OffsetOutOfRangeError,
    PartitionNotOwnedError,
    RillError,
    StaleMemberEpochError,
    UnknownMemberIdError,
)
from rill.client.protocol import INTERNAL_TOPICS
from rill.client.types import TopicPartition
from rill.node.coordinator.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, assign

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
RECONCILE_HEARTBEAT_MS = 50  # how soon a member still reconciling should heartbeat again
MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 3_600_000
PATTERN_MAX_MEM_BYTES = 1 << 20  # RE2's memory budget for one compiled subscription pattern
PATTERNS_CACHED = 1_024


@dataclass(frozen=True)
class CommittedOffset:
    offset: int
    metadata: str


@dataclass
class Member:
    """One consumer in the group, as the coordinator sees it."""

    member_id: str
    client_id: str
    topics: frozenset[str]
    pattern: str
    assignor: str
    session_timeout_ms: int
    last_seen_s: float
    epoch: int = 0
    previous_epoch: int = -1
    granted: set[TopicPartition] = field(default_factory=set)  # what it was told it may own
    owned: set[TopicPartition] = field(default_factory=set)  # what it last said it owns

    @property
    def held(self) -> set[TopicPartition]:
        """Partitions this member may still be reading: granted, or reported and not yet revoked."""
        return self.granted | self.owned

    def subscribes_to(self, topic: str) -> bool:
        if topic in self.topics:
            return True
        return (bool(self.pattern) and topic not in INTERNAL_TOPICS
                and compiled_pattern(self.pattern).fullmatch(topic) is not None)


@dataclass
class HeartbeatResult:
    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: set[TopicPartition]


class ConsumerGroup:
    """A group's members and offsets; ``heartbeat`` is the whole membership protocol."""

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.epoch = 0
        self.members: dict[str, Member] = {}
        self.target: dict[str, set[TopicPartition]] = {}
        self.offsets: dict[TopicPartition, CommittedOffset] = {}
        self._topics_seen: tuple = ()
        self.claims_until = 0.0  # after a coordinator failover: until then, members get back only what they own
        self.rebalances = 0  # epoch bumps at this coordinator (rill_consumer_group_rebalances_total)

    # ---- what the group looks like -------------------------------------------------------

    @property
    def state(self) -> str:
        """Empty (no members), Reconciling (some member not yet at its target) or Stable."""
        if not self.members:
            return "Empty"
        for member in self.members.values():
            wanted = self.target.get(member.member_id, set())
            if member.granted != wanted or member.owned != wanted or member.epoch != self.epoch:
                return "Reconciling"
        return "Stable"

    @property
    def assignor(self) -> str:
        """The assignor most members ask for (ties by name), as KIP-848 picks one for the group."""
        if not self.members:
            return DEFAULT_ASSIGNOR
        votes = Counter(member.assignor for member in self.members.values())
        return min(votes, key=lambda name: (-votes[name], name))

    # ---- membership ----------------------------------------------------------------------------

    def heartbeat(self, member_id: str, member_epoch: int, client_id: str, topics: list[str], pattern: str,
                  assignor: str, session_timeout_ms: int, owned: set[TopicPartition],
                  partition_counts: dict[str, int]) -> HeartbeatResult:
        """Join, stay or leave; returns what the member may own now. Raises UnknownMemberId/FencedMemberEpoch."""
        now = time.monotonic()
        if member_epoch == LEAVE_EPOCH:
            if self.members.pop(member_id, None) is not None:
                self.rebalance(partition_counts)
            return HeartbeatResult(member_id, LEAVE_EPOCH, 0, set())
        _check_subscription(pattern, assignor, session_timeout_ms)
        if member_epoch == JOIN_EPOCH:
            member = self._join(member_id, client_id, topics, pattern, assignor, session_timeout_ms, owned, now)
            self.rebalance(partition_counts)
        else:
            member = self._known(member_id, member_epoch)
            member.last_seen_s = now
            member.owned = owned & member.held
            if (frozenset(topics), pattern, assignor) != (member.topics, member.pattern, member.assignor):
                member.topics, member.pattern, member.assignor = frozenset(topics), pattern, assignor
                self.rebalance(partition_counts)
            member.session_timeout_ms = session_timeout_ms
        self._reconcile(member)
        wanted = self.target.get(member.member_id, set())
        settled = member.granted == wanted and member.owned == wanted
        return HeartbeatResult(member.member_id, member.epoch, 0 if settled else RECONCILE_HEARTBEAT_MS,
                               set(member.granted))

    def _join(self, member_id: str, client_id: str, topics: list[str], pattern: str, assignor: str,
              session_timeout_ms: int, owned: set[TopicPartition], now: float) -> Member:
        """A new member; what it says it owns and nobody else holds seeds its target (coordinator failover)."""
        self.members.pop(member_id, None)
        member = Member(member_id or uuid.uuid4().hex, client_id, frozenset(topics), pattern, assignor,
                        session_timeout_ms, now)
        others = self._held_by_others(member.member_id)
        kept = {tp for tp in owned if tp not in others and member.subscribes_to(tp.topic)}
        member.owned = set(kept)
        member.granted = set(kept)
        for other in self.target.values():
            other -= kept
        self.target[member.member_id] = set(kept)
        self.members[member.member_id] = member
        return member

    def _known(self, member_id: str, member_epoch: int) -> Member:
        member = self.members.get(member_id)
        if member is None:
            raise UnknownMemberIdError(f"group {self.group_id!r} has no member {member_id!r}: join again")
        if member_epoch not in (member.epoch, member.previous_epoch):
            raise FencedMemberEpochError(
                f"member {member_id} of {self.group_id!r} sent epoch {member_epoch}, its epoch is {member.epoch}")
        return member

    def _reconcile(self, member: Member) -> None:
        """Grant the member its target minus what other members still hold; its epoch follows the group's.

        Right after a coordinator failover, members are still coming back, each reporting what it owns:
        until ``claims_until`` a partition goes only to the member that reports owning it, so nobody
        takes a partition from a member that has not rejoined yet.
        """
        wanted = self.target.get(member.member_id, set())
        others = self._held_by_others(member.member_id)
        claiming = time.monotonic() < self.claims_until
        granted = {tp for tp in wanted if tp not in others and (not claiming or tp in member.owned)}
        if granted != member.granted or member.epoch != self.epoch:
            member.previous_epoch, member.epoch = member.epoch, self.epoch
            member.granted = granted

    def _held_by_others(self, member_id: str) -> set[TopicPartition]:
        held: set[TopicPartition] = set()
        for other in self.members.values():
            if other.member_id != member_id:
                held |= other.held
        return held

    def expire(self, now: float) -> list[str]:
        """Remove members silent for longer than their session timeout; returns their ids (then rebalance)."""
        gone = [m.member_id for m in self.members.values() if now - m.last_seen_s > m.session_timeout_ms / 1000]
        for member_id in gone:
            del self.members[member_id]
        return gone

    def topics_changed(self, partition_counts: dict[str, int]) -> None:
        """Rebalance if the subscribed topics or their partition counts changed."""
        if self._relevant(partition_counts, self._subscriptions(partition_counts)) != self._topics_seen:
            self.rebalance(partition_counts)

    def rebalance(self, partition_counts: dict[str, int]) -> None:
        """A new group epoch and target assignment (KIP-848's group epoch bump).

        ``partition_counts`` may name every topic of the cluster; only subscribed ones count.
        """
        self.epoch += 1
        self.rebalances += 1
        subscriptions = self._subscriptions(partition_counts)
        self._topics_seen = self._relevant(partition_counts, subscriptions)
        current = {member_id: self.target.get(member_id, set()) for member_id in self.members}
        self.target = assign(self.assignor, subscriptions, partition_counts, current)

    def _subscriptions(self, partition_counts: dict[str, int]) -> dict[str, frozenset[str]]:
        """Each member's subscribed topics among ``partition_counts``; members that subscribe alike share
        one evaluation (patterns are matched against every topic name)."""
        matched: dict[tuple[frozenset[str], str], frozenset[str]] = {}
        for member in self.members.values():
            key = (member.topics, member.pattern)
            if key not in matched:
                matched[key] = frozenset(t for t in partition_counts if member.subscribes_to(t))
        return {member_id: matched[(member.topics, member.pattern)] for member_id, member in self.members.items()}

    @staticmethod
    def _relevant(partition_counts: dict[str, int], subscriptions: dict[str, frozenset[str]]) -> tuple:
        """The subscribed topics with their partition counts: a rebalance is due when this changes."""
        subscribed = frozenset().union(*subscriptions.values())
        return tuple(sorted((topic, count) for topic, count in partition_counts.items() if topic in subscribed))

    # ---- offsets -------------------------------------------------------------------------------

    def check_commit(self, member_id: str, member_epoch: int, partitions: list[tuple[TopicPartition, int]]
                     ) -> dict[TopicPartition, RillError]:
        """Per-partition refusals of a commit; raises for a request that is refused as a whole."""
        if not member_id and member_epoch < 0:
            if self.members:
                raise GroupNotEmptyError(
                    f"group {self.group_id!r} has {len(self.members)} members: only they commit (stop them first)")
            held = None
        else:
            member = self.members.get(member_id)
            if member is None:
                raise UnknownMemberIdError(f"group {self.group_id!r} has no member {member_id!r}: join again")
            if member_epoch not in (member.epoch, member.previous_epoch):  # previous: a heartbeat answer in flight
                raise StaleMemberEpochError(
                    f"member {member_id} of {self.group_id!r} committed with epoch {member_epoch}, "
                    f"its epoch is {member.epoch}")
            held = member.held
        refused: dict[TopicPartition, RillError] = {}
        for tp, offset in partitions:
            if offset < 0:
                refused[tp] = OffsetOutOfRangeError(f"offset {offset} for {tp.topic}-{tp.partition} is negative")
            elif held is not None and tp not in held:
                refused[tp] = PartitionNotOwnedError(
                    f"member {member_id} of {self.group_id!r} does not own {tp.topic}-{tp.partition}")
        return refused


def _check_subscription(pattern: str, assignor: str, session_timeout_ms: int) -> None:
    if assignor not in ASSIGNORS:
        raise InvalidConfigError(f"unknown assignor {assignor!r}: use one of {', '.join(ASSIGNORS)}")
    if not MIN_SESSION_TIMEOUT_MS <= session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
        raise InvalidConfigError(
            f"session_timeout_ms must be {MIN_SESSION_TIMEOUT_MS}..{MAX_SESSION_TIMEOUT_MS}, got {session_timeout_ms}")
    if pattern:
        compiled_pattern(pattern)


@functools.lru_cache(maxsize=PATTERNS_CACHED)
def compiled_pattern(pattern: str) -> re2._Regexp:
    """The RE2 program of a subscription pattern (cached: members of a group share theirs)."""
    options = re2.Options()
    options.max_mem = PATTERN_MAX_MEM_BYTES
    options.log_errors = False
    options.never_capture = True
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
        raise InvalidRegularExpressionError(f"bad subscription pattern {pattern!r}: {reason}") from None
