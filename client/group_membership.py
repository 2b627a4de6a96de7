"""A consumer's membership in its group: joining, heartbeats, and the assignment the coordinator hands out.

KIP-848 style: the member sends ConsumerGroupHeartbeat requests carrying
what it owns; each answer names the partitions it may own now. Heartbeats
are sent without blocking from the consumer's poll loop (``tick``), so a
consumer that stops polling for longer than its session timeout loses its
partitions, as with Kafka's max.poll.interval.ms. An unknown member id or a
fenced epoch (the session expired, or the coordinator moved) makes it join
again, reporting what it still owns; the coordinator lets it keep what no
one else took.
"""

from __future__ import annotations

import logging
import time
import uuid

from rill.client import protocol
from rill.client.coordinator import CoordinatorLink, coordinator_moved
from rill.client.errors import FencedMemberEpochError, RillError, UnknownMemberIdError, error_for_code
from rill.client.network import NetworkClient
from rill.client.types import TopicPartition

log = logging.getLogger(__name__)

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
RETRY_BACKOFF_S = 0.1
LEAVE_TIMEOUT_MS = 2_000


class GroupMembership:
    """Joins and stays in the group; ``assignment`` changes when the coordinator says so."""

    def __init__(self, network: NetworkClient, link: CoordinatorLink, client_id: str, topics: list[str],
                 pattern: str, assignor: str, session_timeout_ms: int, heartbeat_interval_ms: int):
        self._network = network
        self._link = link
        self._client_id = client_id
        self._topics = sorted(topics)
        self._pattern = pattern
        self._assignor = assignor
        self._session_timeout_ms = session_timeout_ms
        self._interval_s = heartbeat_interval_ms / 1000
        self.session_timeout_s = session_timeout_ms / 1000
        self.answers = 0  # heartbeat answers received, so a caller can wait for the next one
        self.member_id = uuid.uuid4().hex  # the member names itself (KIP-1082), so a lost join answer is harmless
        self.member_epoch = JOIN_EPOCH
        self.assignment: set[TopicPartition] | None = None  # the latest answer, until the consumer takes it
        self._in_flight = False
        self._next_heartbeat = 0.0
        self._fatal: RillError | None = None

    @property
    def group_id(self) -> str:
        return self._link.group_id

    @property
    def joined(self) -> bool:
        return self.member_epoch > 0

    def subscribe(self, topics: list[str], pattern: str) -> None:
        """Change the subscription; the next heartbeat (sent at once) carries it, and the coordinator
        answers with an assignment for it, taking away partitions of topics no longer subscribed."""
        self._topics = sorted(topics)
        self._pattern = pattern
        self.heartbeat_soon()

    def take_assignment(self) -> set[TopicPartition] | None:
        """The assignment of the latest heartbeat answer not yet taken, if any."""
        assignment, self.assignment = self.assignment, None
        return assignment

    def heartbeat_soon(self) -> None:
        """Send the next heartbeat at once (after a revocation, so its new owner gets it quickly)."""
        self._next_heartbeat = 0.0

    def tick(self, owned: set[TopicPartition]) -> None:
        """Send a heartbeat if one is due; raises a fatal error the coordinator gave (bad config)."""
        if self._fatal is not None:
            raise self._fatal
        now = time.monotonic()
        if self._in_flight or now < self._next_heartbeat:
            return
        if self._link.address is None:
            self._look_up_coordinator()
            return
        self._send(self._request(self.member_epoch, owned))

    def _look_up_coordinator(self) -> None:
        """Ask for the coordinator without blocking poll (fetching goes on); back off after a failed answer."""
        error, self._link.last_error = self._link.last_error, None
        if error is None:
            self._link.look_up()
        elif error.retriable:
            self._next_heartbeat = time.monotonic() + RETRY_BACKOFF_S
        else:
            self._fatal = error
            raise error

    def _request(self, epoch: int, owned: set[TopicPartition]) -> protocol.ConsumerGroupHeartbeatRequest:
        return protocol.ConsumerGroupHeartbeatRequest(
            self.group_id, self.member_id, epoch, self._client_id, self._topics, self._pattern, self._assignor,
            self._session_timeout_ms, protocol.topic_partitions(owned))

    def _send(self, request: protocol.ConsumerGroupHeartbeatRequest) -> None:
        sent = self._network.send(self._link.address, protocol.CONSUMER_GROUP_HEARTBEAT, request,
                                  self._on_response, self._session_timeout_ms)
        if sent:
            self._in_flight = True
        else:
            self._link.invalidate()
            self._next_heartbeat = time.monotonic() + RETRY_BACKOFF_S

    def _on_response(self, response: protocol.ConsumerGroupHeartbeatResponse | None,
                     error: RillError | None) -> None:
        self._in_flight = False
        if error is None and response.error_code:
            error = error_for_code(response.error_code, response.error_message)
        if error is not None:
            self._on_error(error)
            return
        self.member_id = response.member_id
        self.member_epoch = response.member_epoch
        self.answers += 1
        self.assignment = {TopicPartition(t.topic, p) for t in response.assignment for p in t.partitions}
        interval = self._interval_s
        if response.heartbeat_interval_ms > 0:
            interval = min(interval, response.heartbeat_interval_ms / 1000)
        self._next_heartbeat = time.monotonic() + interval

    def _on_error(self, error: RillError) -> None:
        if isinstance(error, (UnknownMemberIdError, FencedMemberEpochError)):
            log.info("group %s: joining again: %s", self.group_id, error)
            self.member_epoch = JOIN_EPOCH
            self._next_heartbeat = 0.0
        elif coordinator_moved(error):
            self._link.invalidate()
            self._next_heartbeat = time.monotonic() + RETRY_BACKOFF_S
        else:
            self._fatal = error

    def rejoin_after(self, error: RillError, member_epoch: int) -> None:
        """A commit sent at ``member_epoch`` found the member unknown or fenced: join again, unless the
        member has moved on since (joined again already)."""
        if member_epoch == self.member_epoch:
            self._on_error(error)

    def leave(self) -> None:
        """Tell the coordinator this member is gone, so its partitions move at once (best effort)."""
        if not self.joined or self._link.address is None:
            return
        try:
            self._network.request(self._link.address, protocol.CONSUMER_GROUP_HEARTBEAT,
                                  self._request(LEAVE_EPOCH, set()), LEAVE_TIMEOUT_MS)
        except RillError as error:
            log.info("group %s: leaving failed (the session will expire): %s", self.group_id, error)

