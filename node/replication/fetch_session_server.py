"""The leader answering followers' fetches that use a fetch session (fetch_session.py).

A full fetch (``session_epoch`` 0) opens a session, reads every partition
it names and answers them all. An incremental one (epoch 1, 2, ...)
updates the partitions it names, drops the forgotten ones, and reads only
the session's dirty partitions (named now, or touched by an append or a
high-watermark move since): the answer names those with something new.
With fewer than ``min_bytes`` of records it parks on the session's one
waiter until an append touches one of them or ``max_wait_ms``; a partition touched meanwhile
stays dirty until an answer carries its news. Every read goes through the
ReplicaManager's own partition read, so a follower's progress, the high
watermark and errors are what a full fetch would give. Runs on the asyncio
loop.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Mapping

from rill.client import protocol
from rill.client.errors import RillError
from rill.node.bounded_wait import wait_at_most
from rill.node.replication.fetch_session import (
    FetchSession,
    FetchSessionCache,
    FetchSessionIdNotFoundError,
    PartitionKey,
)
from rill.node.replication.partition import Partition

ReadPartition = Callable[[str, str, protocol.PartitionFetch, int, int], protocol.PartitionFetchResponse]


class SessionFetchServer:
    """Serves session fetches from the leader's partitions; ``cache`` holds the sessions."""

    def __init__(self, cache: FetchSessionCache, partitions: Mapping[PartitionKey, Partition],
                 read_partition: ReadPartition, max_wait_ms: int, fetch_max_bytes: int):
        self.cache = cache
        self._partitions = partitions
        self._read_partition = read_partition
        self._max_wait_ms = max_wait_ms
        self._fetch_max_bytes = fetch_max_bytes
        self.parked = 0  # session fetches waiting now

    def fetch(self, request: protocol.FetchRequest) -> protocol.FetchResponse | Awaitable[protocol.FetchResponse]:
        """Answer at once when there is enough (or an error); otherwise a long poll on the session."""
        try:
            session = self._begin(request)
        except RillError as error:
            return protocol.FetchResponse([], error.code, request.session_id)
        response = self._look(session, request, final=request.max_wait_ms <= 0)
        if response is not None:
            return response
        deadline = time.monotonic() + min(request.max_wait_ms, self._max_wait_ms) / 1000
        return self._long_poll(session, request, deadline)

    def _begin(self, request: protocol.FetchRequest) -> FetchSession:
        """The request's session: opened by a full fetch, resumed by an incremental one; its partitions
        updated to the request's."""
        if request.session_epoch == protocol.NEW_SESSION_EPOCH:
            session = self.cache.open(request.replica_id, request.session_id)
        else:
            session = self.cache.resume(request.session_id, request.session_epoch, request.replica_id)
        for forgotten in request.forgotten:
            for index in forgotten.partitions:
                self._detach((forgotten.topic, index), session)
                self.cache.forget(session, (forgotten.topic, index))
        for topic in request.topics:
            for wanted in topic.partitions:
                self.cache.put(session, (topic.topic, wanted.partition), topic.topic_id, wanted)
        return session

    async def _long_poll(self, session: FetchSession, request: protocol.FetchRequest,
                         deadline: float) -> protocol.FetchResponse:
        self.parked += 1
        try:
            while not session.closed:
                if not await wait_at_most(session.waiter(), deadline - time.monotonic()):
                    break
                response = self._look(session, request, final=False)
                if response is not None:
                    return response
        finally:
            self.parked -= 1
        if session.closed:
            return protocol.FetchResponse([], FetchSessionIdNotFoundError.code, session.id)  # replaced meanwhile
        return self._look(session, request, final=True)

    def _look(self, session: FetchSession, request: protocol.FetchRequest,
              final: bool) -> protocol.FetchResponse | None:
        """Read the dirty partitions; the answer if it goes out now (``final``, an error, or at least
        ``min_bytes`` of records), else None.

        Only an answer that goes out notes its partitions' news as told and
        clears their dirty marks; otherwise they stay dirty.
        """
        session.news = False
        budget = max(min(request.max_bytes, self._fetch_max_bytes), 1)
        total = 0
        errors = False
        read: list[tuple[PartitionKey, protocol.PartitionFetchResponse | None]] = []
        for key in list(session.dirty):
            cached = session.partitions.get(key)
            if cached is None:
                session.dirty.discard(key)
                continue
            if total >= budget:
                read.append((key, None))  # no room left: stays dirty for the next answer
                continue
            limit = max(1, min(cached.fetch.partition_max_bytes, budget - total))
            answer = self._read_partition(key[0], cached.topic_id, cached.fetch, limit, session.replica_id)
            self._attach(key, session)
            total += len(answer.records)
            errors |= bool(answer.error_code)
            read.append((key, answer))
        if not (final or errors or total >= max(request.min_bytes, 1)):
            return None
        by_topic: dict[str, list[protocol.PartitionFetchResponse]] = {}
        for key, answer in read:
            if answer is None:
                continue
            session.dirty.discard(key)
            if session.partitions[key].answered(answer):
                by_topic.setdefault(key[0], []).append(answer)
        topics = [protocol.TopicFetchResponse(topic, answers) for topic, answers in by_topic.items()]
        return protocol.FetchResponse(topics, 0, session.id)

    def _attach(self, key: PartitionKey, session: FetchSession) -> None:
        """Let the session's fetches count as the follower's fetches of this partition (FollowerProgress)."""
        partition = self._partitions.get(key)
        progress = partition.followers.get(session.replica_id) if partition is not None else None
        if progress is not None:
            progress.session = session

    def _detach(self, key: PartitionKey, session: FetchSession) -> None:
        partition = self._partitions.get(key)
        progress = partition.followers.get(session.replica_id) if partition is not None else None
        if progress is not None and progress.session is session:
            progress.session = None
