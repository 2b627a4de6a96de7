"""A consumer's committed offsets: commits (by hand, and the auto-commit schedule) and reading them back.

Commits go to the group's coordinator (client/coordinator.py) carrying the
member's id and epoch, or none for a consumer that assigned its partitions
by hand (the coordinator accepts those only while the group is empty).
What "everything consumed" means is the subscription state's positions:
offsets after records poll returned, never past them. A synchronous commit
refused because the member is unknown or its epoch is old catches up with
the group once and tries again; asynchronous commits and auto-commits log
failures instead of raising (the next one carries newer positions). Not
thread-safe: owned by the consumer's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from rill.client import protocol
from rill.client.consumer_metrics import ConsumerMetrics
from rill.client.coordinator import CoordinatorLink
from rill.client.errors import (
    FencedMemberEpochError,
    OffsetOutOfRangeError,
    RillError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    error_for_code,
)
from rill.client.group_membership import GroupMembership
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient
from rill.client.offset_lookup import list_offsets
from rill.client.subscription_state import SubscriptionState
from rill.client.types import TopicPartition

log = logging.getLogger(__name__)

NO_OFFSET = -1
HEARTBEAT_WAIT_POLL_MS = 20


class OffsetCommitter:
    """Commits for one group; ``group`` is set once the consumer joins it (None: not a member)."""

    def __init__(self, network: NetworkClient, metadata: ClusterMetadata, link: CoordinatorLink,
                 subscriptions: SubscriptionState, auto_commit_interval_ms: int | None, timeout_ms: int,
                 metrics: ConsumerMetrics):
        self._network = network
        self._metrics = metrics
        self._metadata = metadata
        self._link = link
        self._subscriptions = subscriptions
        self._timeout_ms = timeout_ms
        self._auto_commit_s = None if auto_commit_interval_ms is None else auto_commit_interval_ms / 1000
        self._next_auto_commit = time.monotonic() + (self._auto_commit_s or 0)
        self.group: GroupMembership | None = None

    @property
    def auto_commit(self) -> bool:
        return self._auto_commit_s is not None

    # ---- auto-commit ------------------------------------------------------------------

    def maybe_auto_commit(self) -> None:
        """Commit every position asynchronously if the interval passed (a member only once it has joined)."""
        if self._auto_commit_s is None or time.monotonic() < self._next_auto_commit:
            return
        self._next_auto_commit = time.monotonic() + self._auto_commit_s
        if self.group is None or self.group.joined:
            self.commit_quietly(self._subscriptions.positions(), asynchronous=True)

    def commit_quietly(self, offsets: dict[TopicPartition, int], asynchronous: bool) -> None:
        """Auto-commit: a failure is logged, not raised (the next commit carries newer positions)."""
        if not offsets:
            return
        try:
            self.commit(offsets, asynchronous)
        except RillError as error:
            log.warning("group %s: auto-commit failed: %s", self._link.group_id, error)

    # ---- commits ------------------------------------------------------------------------

    def check_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        """Refuse offsets below 0 or beyond the log end before they reach the group."""
        for tp, offset in offsets.items():
            if offset < 0:
                raise OffsetOutOfRangeError(f"cannot commit offset {offset!r} for {tp.topic}-{tp.partition}")
        ends = list_offsets(self._network, self._metadata, {tp: protocol.LATEST_TIMESTAMP for tp in offsets},
                            self._timeout_ms)
        for tp, end in ends.items():
            if offsets[tp] > end:
                raise OffsetOutOfRangeError(
                    f"offset {offsets[tp]} is beyond the log end {end} of {tp.topic}-{tp.partition}")

    def commit(self, offsets: dict[TopicPartition, int], asynchronous: bool) -> None:
        """Commit; a synchronous commit refused for an unknown member or an old epoch (the coordinator moved,
        a heartbeat answer was in flight) catches up with the group once and tries again."""
        if asynchronous:
            self._commit_asynchronously(offsets)
            return
        try:
            self._commit_synchronously(offsets)
        except RillError:
            self._metrics.commit_done(None)
            raise

    def _commit_synchronously(self, offsets: dict[TopicPartition, int]) -> None:
        if self.group is not None and not self.group.joined:
            self._await_heartbeat_answer()
        for attempt in range(2):
            request = self._request(offsets)
            sent_at = time.monotonic()
            try:
                self._check_response(self._link.request(protocol.OFFSET_COMMIT, request))
                self._metrics.commit_done(time.monotonic() - sent_at)
                return
            except (UnknownMemberIdError, FencedMemberEpochError, StaleMemberEpochError) as error:
                if self.group is None or attempt == 1:
                    raise
                if not isinstance(error, StaleMemberEpochError):
                    self.group.rejoin_after(error, request.member_epoch)
                self._await_heartbeat_answer()

    def _commit_asynchronously(self, offsets: dict[TopicPartition, int]) -> None:
        address = self._link.address
        if address is None:
            self._link.look_up()
            log.warning("group %s: asynchronous commit skipped: the coordinator is not known yet", self._link.group_id)
            self._metrics.commit_done(None)
            return
        request = self._request(offsets)
        sent_at = time.monotonic()
        if not self._network.send(address, protocol.OFFSET_COMMIT, request,
                                  lambda response, error: self._on_async_commit(request, response, error, sent_at),
                                  self._timeout_ms):
            log.warning("group %s: asynchronous commit skipped, coordinator not connected", self._link.group_id)
            self._metrics.commit_done(None)
            self._link.invalidate()

    def _request(self, offsets: dict[TopicPartition, int]) -> protocol.OffsetCommitRequest:
        member_id, epoch = (self.group.member_id, self.group.member_epoch) if self.group else ("", NO_OFFSET)
        topics: dict[str, list[protocol.OffsetCommitPartition]] = {}
        for tp in sorted(offsets):
            topics.setdefault(tp.topic, []).append(protocol.OffsetCommitPartition(tp.partition, offsets[tp], ""))
        return protocol.OffsetCommitRequest(self._link.group_id, member_id, epoch,
                                            [protocol.OffsetCommitTopic(t, parts) for t, parts in topics.items()])

    def _await_heartbeat_answer(self) -> None:
        """Heartbeat now and wait (up to the session timeout) for the answer: the member's current id and epoch."""
        group = self.group
        answered = group.answers
        group.heartbeat_soon()
        deadline = time.monotonic() + group.session_timeout_s
        for _ in range(100_000):
            if group.answers > answered and group.joined or time.monotonic() > deadline:
                return
            group.tick(self._subscriptions.assigned())
            self._network.poll(HEARTBEAT_WAIT_POLL_MS)

    @staticmethod
    def _check_response(response: protocol.OffsetCommitResponse) -> None:
        for topic in response.topics:
            for result in topic.partitions:
                if result.error_code:
                    raise error_for_code(result.error_code, result.error_message)

    def _on_async_commit(self, request: protocol.OffsetCommitRequest, response: protocol.OffsetCommitResponse | None,
                         error: RillError | None, sent_at: float) -> None:
        try:
            if error is None and response.error_code:
                error = error_for_code(response.error_code, response.error_message)
            if error is None:
                self._check_response(response)
        except RillError as failure:
            error = failure
        self._metrics.commit_done(None if error is not None else time.monotonic() - sent_at)
        if error is None:
            return
        log.warning("group %s: asynchronous commit failed: %s", self._link.group_id, error)
        if isinstance(error, (UnknownMemberIdError, FencedMemberEpochError)) and self.group is not None:
            self.group.rejoin_after(error, request.member_epoch)
        elif error.retriable:
            self._link.invalidate()

    # ---- committed offsets ---------------------------------------------------------------

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset of each partition (None: nothing committed)."""
        wanted = sorted(set(partitions))
        response = self._link.request(protocol.OFFSET_FETCH,
                                      protocol.OffsetFetchRequest(self._link.group_id,
                                                                  protocol.topic_partitions(wanted)))
        found = {TopicPartition(t.topic, p.partition): p.offset for t in response.topics for p in t.partitions}
        return {tp: (found[tp] if found.get(tp, NO_OFFSET) >= 0 else None) for tp in wanted}
