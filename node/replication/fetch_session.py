"""The leader's fetch sessions: what each follower fetches, cached so its fetches name only what changed.

Kafka's incremental fetch sessions (KIP-227). A follower opens a session
with a full fetch (``session_epoch`` 0) naming every partition it follows
from this leader; the leader caches each one's fetch state (offset, max
bytes, leader epoch, topic id) and what it last answered (high watermark,
log start). Each later fetch carries the session id and the next epoch and
names only the partitions whose fetch state changed (plus ``forgotten``
ones); the leader answers only partitions with something new: records, a
new high watermark or log start, an error.

What is new is known without looking at every partition: an append or a
high-watermark move on a partition ``touch``es the sessions holding it,
which marks it dirty; an append (or a role change) also wakes the
session's one waiter (its parked long poll). A high-watermark move alone
waits for the next answer, as in Kafka, where a follower's delayed fetch
completes on bytes, not on the move: waking for it cost every record one
more read per follower. Per-partition work happens only when something
happens.

A session is dropped when its follower opens another (a restart, a failed
fetch), and the least recently used one when more than ``max_sessions``
exist; a fetch for a dropped session or at the wrong epoch gets
FetchSessionIdNotFoundError or InvalidFetchSessionEpochError as its
top-level error, and the follower starts over with a full fetch.
Not thread-safe: runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import OrderedDict

from rill.client import protocol
from rill.client.errors import RillError

PartitionKey = tuple[str, int]
MAX_FETCH_SESSIONS = 1_000  # Kafka's max.incremental.fetch.session.cache.slots


class FetchSessionIdNotFoundError(RillError):
    """The leader has no fetch session of that id (dropped, or the leader restarted): fetch in full."""

    code = 70  # Kafka's FETCH_SESSION_ID_NOT_FOUND
    retriable = True


class InvalidFetchSessionEpochError(RillError):
    """The fetch session's epoch is not the one the leader expects (a lost answer): fetch in full."""

    code = 71  # Kafka's INVALID_FETCH_SESSION_EPOCH
    retriable = True


class CachedPartition:
    """One partition of a session: the follower's last fetch state and what the leader last answered."""

    __slots__ = ("topic_id", "fetch", "high_watermark", "log_start_offset")

    def __init__(self, topic_id: str, fetch: protocol.PartitionFetch):
        self.topic_id = topic_id
        self.fetch = fetch
        self.high_watermark = -1  # not answered yet: the first answer always names the partition
        self.log_start_offset = -1

    def answered(self, answer: protocol.PartitionFetchResponse) -> bool:
        """Whether ``answer`` tells the follower something new; notes it as told."""
        new = bool(answer.error_code or answer.records or answer.high_watermark != self.high_watermark
                   or answer.log_start_offset != self.log_start_offset)
        self.high_watermark, self.log_start_offset = answer.high_watermark, answer.log_start_offset
        return new


class FetchSession:
    """One follower's session with this leader.

    ``last_fetch_s`` is when the follower last fetched in it: while a
    partition's follower offset stays at the leader's log end, each of
    those fetches counts as a caught-up fetch of that partition too
    (Partition's FollowerProgress reads it), so idle partitions need no
    work per fetch. A closed session's clock stops.
    """

    def __init__(self, session_id: int, replica_id: int):
        self.id = session_id
        self.replica_id = replica_id
        self.epoch = 1  # the epoch the next incremental fetch must carry
        self.partitions: dict[PartitionKey, CachedPartition] = {}
        self.dirty: set[PartitionKey] = set()
        self.news = False  # touched since the last look at the dirty partitions
        self.last_fetch_s = time.monotonic()
        self.closed = False
        self._waiter: asyncio.Future | None = None

    def touch(self, key: PartitionKey, wake: bool = True) -> None:
        """Something happened on ``key``: read it at the next look, and (``wake``) wake the parked fetch.
        A high-watermark move alone does not wake it: the next answer carries it."""
        self.dirty.add(key)
        if not wake:
            return
        self.news = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def waiter(self) -> asyncio.Future:
        """A future the next touch (or the session's close) completes; done already if touched since the
        last look (between a fetch's first look and its long poll's start, say)."""
        self._waiter = asyncio.get_running_loop().create_future()
        if self.news or self.closed:
            self._waiter.set_result(None)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class FetchSessionCache:
    """Every fetch session of this leader, and which sessions hold each partition."""

    def __init__(self, max_sessions: int = MAX_FETCH_SESSIONS):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()  # least recently used first
        self._by_replica: dict[int, FetchSession] = {}
        self._holding: dict[PartitionKey, set[FetchSession]] = {}
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, replica_id: int, previous_id: int) -> FetchSession:
        """A new, empty session for ``replica_id``; its previous session (``previous_id`` or any other of
        that replica: a follower has one session per leader) is closed."""
        previous = self._sessions.get(previous_id)
        if previous is not None and previous.replica_id == replica_id:
            self.close(previous)
        older = self._by_replica.get(replica_id)
        if older is not None:
            self.close(older)
        while len(self._sessions) >= self._max_sessions:
            self.close(next(iter(self._sessions.values())))
        session = FetchSession(self._next_id(), replica_id)
        self._sessions[session.id] = session
        self._by_replica[replica_id] = session
        return session

    def _next_id(self) -> int:
        while True:
            session_id = next(self._ids) % (1 << 31)
            if session_id and session_id not in self._sessions:
                return session_id

    def resume(self, session_id: int, epoch: int, replica_id: int) -> FetchSession:
        """The session an incremental fetch continues, its epoch moved on; raises the session errors."""
        session = self._sessions.get(session_id)
        if session is None or session.replica_id != replica_id:
            raise FetchSessionIdNotFoundError(f"no fetch session {session_id} of broker {replica_id} here")
        if epoch != session.epoch:
            raise InvalidFetchSessionEpochError(
                f"fetch session {session_id} expects epoch {session.epoch}, not {epoch}")
        session.epoch += 1
        session.last_fetch_s = time.monotonic()
        self._sessions.move_to_end(session_id)
        return session

    def put(self, session: FetchSession, key: PartitionKey, topic_id: str, fetch: protocol.PartitionFetch) -> None:
        """Add or update a partition's fetch state in the session; it is read at the next look."""
        cached = session.partitions.get(key)
        if cached is None:
            session.partitions[key] = CachedPartition(topic_id, fetch)
            self._holding.setdefault(key, set()).add(session)
        else:
            cached.topic_id, cached.fetch = topic_id, fetch
        session.dirty.add(key)

    def forget(self, session: FetchSession, key: PartitionKey) -> None:
        """Drop a partition from the session."""
        if session.partitions.pop(key, None) is None:
            return
        session.dirty.discard(key)
        holders = self._holding.get(key)
        if holders is not None:
            holders.discard(session)
            if not holders:
                del self._holding[key]

    def touched(self, keys, wake: bool = True) -> None:
        """Appends (``wake``) or high-watermark moves on ``keys``: tell the sessions holding them."""
        for key in keys:
            for session in self._holding.get(key, ()):
                session.touch(key, wake)

    def close(self, session: FetchSession) -> None:
        """Drop a session: its parked fetch ends, its clock stops."""
        if self._sessions.pop(session.id, None) is None:
            return
        if self._by_replica.get(session.replica_id) is session:
            del self._by_replica[session.replica_id]
        for key in list(session.partitions):
            self.forget(session, key)
        session.close()
