"""A parked fetch is woken by an append that lands before its long poll's task first runs.

The broker's server answers a fetch that finds nothing with a coroutine that
runs on a later turn of the loop; requests read in between (a produce, a
follower's fetch moving the high watermark) must still wake it. Before the
waiter was registered when the fetch returned, such a fetch slept its whole
``max_wait_ms`` with the record already there. In-process: a ReplicaManager
over a LogManager in a temp dir, one-broker topic.
"""

from __future__ import annotations

import asyncio

from rill.client import protocol
from rill.client.batch import encode_batch
from rill.node.log.manager import LogManager
from rill.node.metadata.state import PartitionState, TopicState
from rill.node.replication.replica_manager import ReplicaLimits, ReplicaManager

LONG_WAIT_MS = 60_000  # the fetch's own wait: far longer than the test waits for its answer
ANSWER_DEADLINE_S = 10.0


def _replicas(tmp_path) -> ReplicaManager:
    replicas = ReplicaManager(1, LogManager(tmp_path), lambda partition, role: None, 30_000,
                              ReplicaLimits(LONG_WAIT_MS, 30_000, 1_000, 16 * 1024 * 1024))
    replicas.apply_topic("events", TopicState("events", "id-1", {}, (PartitionState((1,), 1, 0, (1,)),)))
    return replicas


def _fetch_from(offset: int) -> protocol.FetchRequest:
    return protocol.FetchRequest(LONG_WAIT_MS, 1, 1 << 20, [protocol.TopicFetch(
        "events", [protocol.PartitionFetch(0, offset, 1 << 20)])])


def _produce(acks: int) -> protocol.ProduceRequest:
    return protocol.ProduceRequest(acks, 5_000, [protocol.TopicProduceData(
        "events", [protocol.PartitionProduceData(0, encode_batch([b"order-1"]))])])


def test_append_between_the_read_and_the_long_poll_wakes_the_fetch(tmp_path):
    replicas = _replicas(tmp_path)

    async def scenario() -> protocol.FetchResponse:
        parked = replicas.fetch(_fetch_from(0))  # nothing there yet: a long poll, not yet started
        assert asyncio.iscoroutine(parked)
        response = replicas.produce(_produce(acks=1))  # appended before the long poll first runs
        assert response.topics[0].partitions[0].error_code == 0
        try:
            return await asyncio.wait_for(parked, ANSWER_DEADLINE_S)
        finally:
            await replicas.log_manager.close_all()

    answer = asyncio.run(scenario()).topics[0].partitions[0]
    assert answer.error_code == 0
    assert answer.high_watermark == 1
    assert answer.records, "the fetch was answered without the appended record"


def test_a_fetch_answered_by_its_deadline_stops_watching(tmp_path):
    replicas = _replicas(tmp_path)
    request = protocol.FetchRequest(50, 1, 1 << 20, _fetch_from(0).topics)

    async def scenario() -> protocol.FetchResponse:
        try:
            return await asyncio.wait_for(replicas.fetch(request), ANSWER_DEADLINE_S)
        finally:
            await replicas.log_manager.close_all()

    answer = asyncio.run(scenario()).topics[0].partitions[0]
    assert answer.records == b""
    assert replicas.parked_fetches() == 0
