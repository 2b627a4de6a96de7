"""Which parked requests an append or a high-watermark move wakes, and the bounded wait they park on.

On a replicated partition an append gives followers records but consumers
nothing yet (they read below the high watermark), and a high-watermark move
gives consumers records but a follower only the new mark, which its next
answer carries. Waking the others only cost a re-read and a re-park per
record. In-process: a ReplicaManager over a LogManager in a temp dir, a
3-replica partition led by broker 1 whose followers do not run.
"""

from __future__ import annotations

import asyncio

from rill.client import protocol
from rill.client.batch import encode_batch
from rill.node.bounded_wait import TIMED_OUT, timed_out, wait_at_most
from rill.node.log.manager import LogManager
from rill.node.metadata.state import PartitionState, TopicState
from rill.node.replication.fetch_session import FetchSession
from rill.node.replication.replica_manager import ReplicaLimits, ReplicaManager

LONG_WAIT_MS = 60_000
ANSWER_DEADLINE_S = 10.0
KEY = ("events", 0)


def _leader_of_three(tmp_path) -> ReplicaManager:
    replicas = ReplicaManager(1, LogManager(tmp_path), lambda partition, role: None, 30_000,
                              ReplicaLimits(LONG_WAIT_MS, 30_000, 1_000, 16 * 1024 * 1024))
    replicas.apply_topic("events", TopicState("events", "id-1", {"min.insync.replicas": "1"},
                                              (PartitionState((1, 2, 3), 1, 0, (1, 2, 3)),)))
    return replicas


def _consumer_fetch() -> protocol.FetchRequest:
    return protocol.FetchRequest(LONG_WAIT_MS, 1, 1 << 20, [protocol.TopicFetch(
        "events", [protocol.PartitionFetch(0, 0, 1 << 20)])])


def _follower_fetch(replica_id: int, offset: int) -> protocol.FetchRequest:
    return protocol.FetchRequest(0, 1, 1 << 20, [protocol.TopicFetch(
        "events", [protocol.PartitionFetch(0, offset, 1 << 20)])], replica_id=replica_id)


def _produce() -> protocol.ProduceRequest:
    return protocol.ProduceRequest(1, 5_000, [protocol.TopicProduceData(
        "events", [protocol.PartitionProduceData(0, encode_batch([b"order-1"]))])])


def test_a_parked_consumer_fetch_rereads_only_when_the_high_watermark_moves(tmp_path):
    replicas = _leader_of_three(tmp_path)
    reads = []
    read = replicas._read
    replicas._read = lambda request: reads.append(request) or read(request)

    async def scenario() -> protocol.FetchResponse:
        task = asyncio.ensure_future(replicas.fetch(_consumer_fetch()))
        await asyncio.sleep(0)  # the long poll is parked
        first_reads = len(reads)
        replicas.produce(_produce())  # appended; the followers have not fetched it: not committed
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(reads) == first_reads, "the append woke a consumer fetch that could read nothing new"
        assert not task.done()
        for follower in (2, 3):  # both followers fetch past the record: the high watermark moves
            assert replicas.fetch(_follower_fetch(follower, 1)).topics[0].partitions[0].error_code == 0
        try:
            return await asyncio.wait_for(task, ANSWER_DEADLINE_S)
        finally:
            await replicas.log_manager.close_all()

    answer = asyncio.run(scenario()).topics[0].partitions[0]
    assert answer.high_watermark == 1
    assert answer.records, "the high-watermark move did not wake the consumer fetch"


def test_a_high_watermark_move_marks_a_follower_session_without_waking_it():
    async def scenario() -> None:
        session = FetchSession(7, replica_id=2)
        waiter = session.waiter()
        session.touch(KEY, wake=False)
        assert KEY in session.dirty  # the next answer carries the new mark
        assert not waiter.done()
        session.touch(KEY)  # records: wakes the parked fetch
        assert waiter.done()

    asyncio.run(scenario())


def test_wait_at_most_times_out_by_completing_the_future():
    async def scenario() -> None:
        future = asyncio.get_running_loop().create_future()
        assert await wait_at_most(future, 0.01) is False
        assert future.result() is TIMED_OUT and timed_out(future)
        expired = asyncio.get_running_loop().create_future()
        assert await wait_at_most(expired, 0) is False and timed_out(expired)

    asyncio.run(scenario())


def test_wait_at_most_returns_when_completed_and_leaves_an_exception_on_the_future():
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        loop.call_soon(answered.set_result, None)
        assert await wait_at_most(answered, ANSWER_DEADLINE_S) is True
        assert not timed_out(answered)
        failed = loop.create_future()
        loop.call_soon(failed.set_exception, ValueError("leadership moved"))
        assert await wait_at_most(failed, ANSWER_DEADLINE_S) is True
        assert isinstance(failed.exception(), ValueError) and not timed_out(failed)

    asyncio.run(scenario())
