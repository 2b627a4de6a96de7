"""One partition replica hosted on this broker: its log, its role, and (as leader) its followers.

As leader it tracks each follower's log end offset (the offset it fetches
from) and when it was last caught up; the high watermark is the smallest log
end offset over the ISR, so a record below it is on every in-sync replica.
As follower it keeps the leader's high watermark, capped by its own log end.

Invariants: ``high_watermark <= log.log_end_offset``; while this broker
leads at one epoch the high watermark never goes back; consumers read only
below it. A replica whose log hit a disk error is offline until the broker
restarts: it serves nothing (StorageError) and neither fetches nor appends.
Not thread-safe: used from the asyncio loop only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from rill.client.errors import (
    FencedLeaderEpochError,
    NotEnoughReplicasError,
    NotLeaderError,
    StorageError,
    UnknownTopicError,
)
from rill.node.log.append_info import AppendInfo
from rill.node.log.log import Log
from rill.node.metadata.state import PartitionState

UNKNOWN_OFFSET = -1


class SessionClock(Protocol):
    """A follower's fetch session (fetch_session.py): when it last fetched."""

    last_fetch_s: float


@dataclass
class FollowerProgress:
    """What the leader knows of one follower, from its fetches (Kafka's replica state).

    ``session``: the follower's fetch session holding this partition. Its
    fetches name the partition only when the follower's offset changes, so
    each of them counts as a fetch of it at the offset last named: caught up
    while that offset is the leader's log end.
    """

    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_s: float = 0.0
    leader_end_at_last_fetch: int = UNKNOWN_OFFSET
    last_fetch_s: float = 0.0
    session: SessionClock | None = None

    def fetched_s(self) -> float:
        """When the follower last fetched this partition (its session's fetches count)."""
        return self.last_fetch_s if self.session is None else max(self.last_fetch_s, self.session.last_fetch_s)

    def caught_up_s(self, leader_end: int) -> float:
        """When the follower was last caught up with the leader, whose log now ends at ``leader_end``."""
        if self.session is not None and self.log_end_offset >= leader_end:
            return max(self.last_caught_up_s, self.session.last_fetch_s)
        return self.last_caught_up_s

    def record_fetch(self, fetch_offset: int, leader_end: int, now_s: float) -> None:
        """Kafka's rule: caught up now if it asked for the leader's end; as of its last fetch if it
        asked for at least what the leader's end was then."""
        if fetch_offset >= leader_end:
            self.last_caught_up_s = now_s
        elif fetch_offset >= self.leader_end_at_last_fetch >= 0:
            self.last_caught_up_s = max(self.last_caught_up_s, self.last_fetch_s)
        self.log_end_offset = fetch_offset
        self.leader_end_at_last_fetch = leader_end
        self.last_fetch_s = now_s


class Partition:
    """A replica of (topic, index) on broker ``node_id``."""

    def __init__(self, topic: str, topic_id: str, index: int, node_id: int, log: Log, state: PartitionState,
                 min_insync_replicas: int, follower_timeout_s: float):
        self.follower_timeout_s = follower_timeout_s
        self.topic = topic
        self.topic_id = topic_id
        self.index = index
        self.node_id = node_id
        self.log = log
        self.state = state
        self.min_insync_replicas = min_insync_replicas
        self.followers: dict[int, FollowerProgress] = {}
        self.high_watermark = 0
        self.proposed_isr: tuple[int, ...] | None = None  # an ISR change sent to the controller, not yet back
        self.epoch_start_offset = 0  # the log end when this broker started leading at this epoch
        self.offline_reason: str | None = None  # the disk error that took this replica offline
        if self.is_leader:
            self._start_leading()

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.index}"

    @property
    def is_leader(self) -> bool:
        return self.state.leader == self.node_id

    @property
    def under_replicated(self) -> bool:
        return self.is_leader and len(self.state.isr) < len(self.state.replicas)

    @property
    def offline(self) -> bool:
        return self.offline_reason is not None

    def go_offline(self, reason: str) -> None:
        """Stop serving this replica after a disk error (see the module docstring)."""
        self.offline_reason = reason

    def ensure_online(self) -> None:
        """Raise StorageError (retriable: clients move to the new leader) if this replica is offline."""
        if self.offline_reason is not None:
            raise StorageError(f"{self.name} is offline on broker {self.node_id}: {self.offline_reason}")

    def ensure_leader(self) -> None:
        """Raise StorageError if this replica is offline, NotLeaderError unless this broker leads it."""
        self.ensure_online()
        if not self.is_leader:
            raise NotLeaderError(f"broker {self.node_id} does not lead {self.name} (leader: {self.state.leader})")

    def check_topic_id(self, topic_id: str) -> None:
        """Refuse a replica's request for another topic of the same name (deleted and re-created)."""
        if topic_id and topic_id != self.topic_id:
            raise UnknownTopicError(f"{self.name} here is topic id {self.topic_id}, not {topic_id}")

    def check_epoch(self, leader_epoch: int) -> None:
        """Refuse a request made for another leader epoch (-1 skips the check)."""
        if leader_epoch < 0 or leader_epoch == self.state.leader_epoch:
            return
        if leader_epoch < self.state.leader_epoch:
            raise FencedLeaderEpochError(
                f"{self.name}: leader epoch {leader_epoch} is older than {self.state.leader_epoch}")
        raise NotLeaderError(f"{self.name}: leader epoch {leader_epoch} is not known here yet")

    # ---- role changes ------------------------------------------------------------------

    def update_state(self, state: PartitionState, min_insync_replicas: int) -> str | None:
        """Take a newer state from the metadata; returns "leader" or "follower" when the role changed."""
        if state.partition_epoch < self.state.partition_epoch and state.leader_epoch <= self.state.leader_epoch:
            return None
        previous = self.state
        self.state = state
        self.min_insync_replicas = min_insync_replicas
        self.proposed_isr = None
        if state.leader_epoch != previous.leader_epoch or state.leader != previous.leader:
            if self.is_leader:
                self._start_leading()
                return "leader"
            self.followers = {}
            self.high_watermark = min(self.high_watermark, self.log.log_end_offset)
            return "follower"
        self.advance_high_watermark()
        return None

    def _start_leading(self) -> None:
        """Followers' progress is unknown until they fetch; ISR members count as caught up now."""
        now = time.monotonic()
        self.followers = {
            replica: FollowerProgress(last_caught_up_s=now if replica in self.state.isr else 0.0, last_fetch_s=now)
            for replica in self.state.replicas if replica != self.node_id
        }
        self.high_watermark = min(self.high_watermark, self.log.log_end_offset)
        self.epoch_start_offset = self.log.log_end_offset
        self.advance_high_watermark()

    @property
    def high_watermark_known(self) -> bool:
        """Whether the high watermark has caught up with this leader's epoch start. Before that it may
        be lower than what the previous leader already reported (Kafka's KAFKA-2334)."""
        return self.high_watermark >= self.epoch_start_offset

    # ---- leader side -----------------------------------------------------------------------

    def append_as_leader(self, records: bytes, acks: int) -> AppendInfo:
        """Validate and append a producer's batches; raises if this broker may not take them."""
        self.ensure_leader()
        if acks == -1:
            live = self._live_isr_size()
            if live < self.min_insync_replicas:
                raise NotEnoughReplicasError(
                    f"{self.name} has {live} live in-sync replicas (ISR {list(self.state.isr)}), "
                    f"min.insync.replicas is {self.min_insync_replicas}"
                )
        info = self.log.append(records, self.state.leader_epoch)
        self.advance_high_watermark()
        return info

    def read_for_consumer(self, fetch_offset: int, max_bytes: int, leader_epoch: int) -> bytes:
        """Committed batches (below the high watermark) from fetch_offset; raises OffsetOutOfRangeError."""
        self.ensure_leader()
        self.check_epoch(leader_epoch)
        return self.log.read(fetch_offset, max_bytes, max_offset=self.high_watermark)

    def read_for_follower(self, replica_id: int, fetch_offset: int, max_bytes: int,
                          leader_epoch: int) -> tuple[bytes, bool]:
        """Batches up to the log end for a follower, noting its progress; (records, high watermark moved)."""
        self.ensure_leader()
        self.check_epoch(leader_epoch)
        progress = self.followers.get(replica_id)
        if progress is None:
            raise NotLeaderError(f"broker {replica_id} is not a replica of {self.name}")
        records = self.log.read(fetch_offset, max_bytes)
        progress.record_fetch(fetch_offset, self.log.log_end_offset, time.monotonic())
        return records, self.advance_high_watermark()

    def _live_isr_size(self) -> int:
        """ISR members that fetched within the follower timeout. The controller may not have shrunk
        the ISR yet (or cannot, without a Raft majority); refusing early is safe, waiting is not useful."""
        deadline = time.monotonic() - self.follower_timeout_s
        return sum(
            1 for replica in self.state.isr
            if replica == self.node_id
            or (replica in self.followers and self.followers[replica].fetched_s() >= deadline)
        )

    def advance_high_watermark(self) -> bool:
        """Move the high watermark to the smallest log end over the ISR; True if it moved."""
        if not self.is_leader:
            return False
        ends = [self.log.log_end_offset]
        for replica in self.maximal_isr:
            if replica != self.node_id:
                progress = self.followers.get(replica)
                ends.append(progress.log_end_offset if progress else UNKNOWN_OFFSET)
        candidate = min(ends)
        if candidate <= self.high_watermark:
            return False
        self.high_watermark = candidate
        return True

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR with a proposed change's additions, for the high watermark (Kafka's KIP-497): a
        replica about to join must already hold everything below the high watermark, and one about to
        leave still counts until the controller agrees."""
        if self.proposed_isr is None:
            return self.state.isr
        return tuple(sorted(set(self.state.isr) | set(self.proposed_isr)))

    def propose_isr(self, isr: tuple[int, ...] | None) -> None:
        """Note (or, with None, forget after a refusal) an ISR change sent to the controller."""
        self.proposed_isr = isr

    def wanted_isr(self, lag_max_s: float) -> tuple[int, ...] | None:
        """The ISR this leader should ask for: lagging members out, caught-up replicas in; None if no change."""
        if not self.is_leader:
            return None
        now = time.monotonic()
        leader_end = self.log.log_end_offset
        isr = []
        for replica in self.state.replicas:
            if replica == self.node_id:
                isr.append(replica)
                continue
            progress = self.followers.get(replica)
            if progress is None:
                continue
            caught_up_s = progress.caught_up_s(leader_end)
            if replica in self.state.isr:
                if now - caught_up_s <= lag_max_s:
                    isr.append(replica)
            elif (now - caught_up_s <= lag_max_s
                  and progress.log_end_offset >= max(self.high_watermark, self._epoch_start())):
                isr.append(replica)
        wanted = tuple(isr)
        return None if set(wanted) == set(self.state.isr) else wanted

    def _epoch_start(self) -> int:
        """The first offset of the current leader epoch: a joiner must have reached it (Kafka's rule)."""
        epoch, end = self.log.end_offset_for_epoch(self.state.leader_epoch - 1)
        return end if epoch >= 0 else 0

    # ---- follower side -----------------------------------------------------------------------

    def append_as_follower(self, records: bytes, leader_high_watermark: int) -> None:
        self.ensure_online()
        if records:
            self.log.append_as_follower(records)
        self.high_watermark = max(self.high_watermark, min(leader_high_watermark, self.log.log_end_offset))
