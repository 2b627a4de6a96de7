"""Followers' incremental fetch sessions (KIP-227): the leader answers only partitions with news.

In-process: a ReplicaManager leading three partitions (replicas 1 and 2)
over a LogManager in a temp dir; the test plays follower 2, building its
fetches with the follower's own FollowerSession.
"""

from __future__ import annotations

import asyncio

from rill.client import protocol
from rill.client.batch import encode_batch, read_header
from rill.node.log.manager import LogManager
from rill.node.metadata.state import PartitionState, TopicState
from rill.node.replication.fetch_session import (
    FetchSessionCache,
    FetchSessionIdNotFoundError,
    InvalidFetchSessionEpochError,
)
from rill.node.replication.fetch_session_builder import FollowerSession
from rill.node.replication.replica_manager import ReplicaLimits, ReplicaManager

FOLLOWER = 2
PARTITIONS = 3
LONG_WAIT_MS = 60_000
ANSWER_DEADLINE_S = 10.0


def _leader(tmp_path) -> ReplicaManager:
    replicas = ReplicaManager(1, LogManager(tmp_path), lambda partition, role: None, 30_000,
                              ReplicaLimits(LONG_WAIT_MS, 30_000, 1_000, 16 * 1024 * 1024))
    state = PartitionState((1, FOLLOWER), 1, 0, (1, FOLLOWER))
    replicas.apply_topic("events", TopicState("events", "id-1", {}, (state,) * PARTITIONS))
    return replicas


class Follower:
    """Follower 2's view: where its log of each partition ends, and its session with the leader."""

    def __init__(self) -> None:
        self.ends = {("events", index): 0 for index in range(PARTITIONS)}
        self.session = FollowerSession(FOLLOWER)

    def request(self, max_wait_ms: int = 0) -> protocol.FetchRequest:
        return self.session.request(self.ends, lambda key: (self.ends[key], 0, "id-1") if key in self.ends else None,
                                    lambda key: 0, max_wait_ms, 1 << 20, 1 << 20)

    def take(self, response: protocol.FetchResponse) -> dict[int, protocol.PartitionFetchResponse]:
        """Apply an answer: count the records fetched as appended; the answered partitions by index."""
        assert self.session.answered(response)
        answers = {answer.partition: answer for topic in response.topics for answer in topic.partitions}
        for index, answer in answers.items():
            if answer.records:  # one batch per answer here
                header = read_header(answer.records)
                self.ends[("events", index)] = header.base_offset + header.last_offset_delta + 1
                self.session.mark(("events", index))
        return answers


def _produce(replicas: ReplicaManager, index: int, acks: int = 1):
    return replicas.produce(protocol.ProduceRequest(acks, 5_000, [protocol.TopicProduceData(
        "events", [protocol.PartitionProduceData(index, encode_batch([b"order"]))])]))


async def _answer(result) -> protocol.FetchResponse:
    return await asyncio.wait_for(result, ANSWER_DEADLINE_S) if asyncio.iscoroutine(result) else result


def test_an_idle_session_fetch_names_no_partition_and_an_append_names_only_its_own(tmp_path):
    replicas, follower = _leader(tmp_path), Follower()

    async def scenario() -> None:
        try:
            full = follower.take(await _answer(replicas.fetch(follower.request())))
            assert sorted(full) == [0, 1, 2]  # the full fetch opening the session answers everything
            request = follower.request()
            assert request.topics == [] and request.session_epoch == 1
            assert follower.take(await _answer(replicas.fetch(request))) == {}  # nothing new: names nothing
            _produce(replicas, 1)
            answers = follower.take(await _answer(replicas.fetch(follower.request())))
            assert list(answers) == [1] and answers[1].records
            request = follower.request()  # the follower names only the partition it appended to
            assert [p.partition for t in request.topics for p in t.partitions] == [1]
            answers = follower.take(await _answer(replicas.fetch(request)))
            assert list(answers) == [1] and answers[1].high_watermark == 1 and not answers[1].records
        finally:
            await replicas.log_manager.close_all()

    asyncio.run(scenario())


def test_an_acks_all_write_completes_when_the_session_names_the_new_offset(tmp_path):
    replicas, follower = _leader(tmp_path), Follower()

    async def scenario() -> protocol.ProduceResponse:
        try:
            follower.take(await _answer(replicas.fetch(follower.request())))
            pending = asyncio.ensure_future(_produce(replicas, 2, acks=-1))
            parked = replicas.fetch(follower.request(max_wait_ms=LONG_WAIT_MS))  # long poll, woken by the append
            follower.take(await _answer(parked))
            follower.take(await _answer(replicas.fetch(follower.request())))  # names the new offset
            return await asyncio.wait_for(pending, ANSWER_DEADLINE_S)
        finally:
            await replicas.log_manager.close_all()

    answer = asyncio.run(scenario()).topics[0].partitions[0]
    assert answer.error_code == 0 and answer.base_offset == 0


def test_an_unknown_session_or_a_wrong_epoch_is_a_session_error_and_the_follower_starts_over(tmp_path):
    replicas, follower = _leader(tmp_path), Follower()

    async def scenario() -> None:
        try:
            follower.take(await _answer(replicas.fetch(follower.request())))
            stale = follower.request()
            follower.take(await _answer(replicas.fetch(stale)))
            wrong_epoch = await _answer(replicas.fetch(stale))  # the same epoch again: a lost answer
            assert wrong_epoch.error_code == InvalidFetchSessionEpochError.code
            unknown = protocol.FetchRequest(0, 1, 1 << 20, [], replica_id=FOLLOWER, session_id=stale.session_id + 1,
                                            session_epoch=5)
            assert (await _answer(replicas.fetch(unknown))).error_code == FetchSessionIdNotFoundError.code
            assert not follower.session.answered(wrong_epoch)
            again = follower.request()
            assert again.session_epoch == protocol.NEW_SESSION_EPOCH and len(again.topics[0].partitions) == 3
            assert sorted(follower.take(await _answer(replicas.fetch(again)))) == [0, 1, 2]
        finally:
            await replicas.log_manager.close_all()

    asyncio.run(scenario())


def test_an_idle_partition_stays_in_sync_through_the_sessions_fetches(tmp_path):
    replicas, follower = _leader(tmp_path), Follower()

    async def scenario() -> None:
        try:
            follower.take(await _answer(replicas.fetch(follower.request())))
            partition = replicas.partitions[("events", 0)]
            progress = partition.followers[FOLLOWER]
            progress.last_caught_up_s = progress.last_fetch_s = 0.0  # as if never fetched on its own since
            follower.take(await _answer(replicas.fetch(follower.request())))  # names nothing
            assert partition.wanted_isr(lag_max_s=5.0) is None  # the session's fetch counts: still in sync
        finally:
            await replicas.log_manager.close_all()

    asyncio.run(scenario())


def test_a_follower_has_one_session_and_the_cache_is_bounded():
    cache = FetchSessionCache(max_sessions=2)
    first = cache.open(2, 0)
    second = cache.open(2, first.id)  # the follower starts over: its old session goes
    assert first.closed and not second.closed and len(cache) == 1
    cache.open(3, 0)
    cache.open(4, 0)  # a third replica: the least recently used session goes
    assert second.closed and len(cache) == 2


def test_forgotten_partitions_are_named_once_then_dropped():
    session = FollowerSession(FOLLOWER)
    ends = {("events", 0): 4, ("events", 1): 7}

    def state(key):
        return (ends[key], 0, "id-1") if key in ends else None

    full = session.request(ends, state, lambda key: 0, 0, 1 << 20, 1 << 20)
    assert len(full.topics[0].partitions) == 2
    session.answered(protocol.FetchResponse([], 0, 9))
    del ends[("events", 1)]
    session.mark(("events", 1))
    incremental = session.request(ends, state, lambda key: 0, 0, 1 << 20, 1 << 20)
    assert incremental.session_id == 9 and incremental.topics == []
    assert incremental.forgotten == [protocol.ForgottenTopic("events", [1])]
    session.answered(protocol.FetchResponse([], 0, 9))
    assert session.request(ends, state, lambda key: 0, 0, 1 << 20, 1 << 20).forgotten == []


def test_a_parked_fetch_with_only_a_high_watermark_to_tell_waits_instead_of_spinning(tmp_path):
    replicas, follower = _leader(tmp_path), Follower()
    looks = 0
    look = replicas.fetch_sessions._look

    def counted(*args, **kwargs):
        nonlocal looks
        looks += 1
        return look(*args, **kwargs)

    async def scenario() -> protocol.FetchResponse:
        try:
            follower.take(await _answer(replicas.fetch(follower.request())))
            replicas.fetch_sessions._look = counted
            replicas.high_watermark_moved(("events", 0), replicas.partitions[("events", 0)])  # a touch, no records
            return await _answer(replicas.fetch(follower.request(max_wait_ms=300)))
        finally:
            await replicas.log_manager.close_all()

    asyncio.run(scenario())
    assert looks <= 3, f"the parked fetch looked {looks} times: it spun on a partition with nothing to send"
