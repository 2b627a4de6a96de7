"""ListOffsets for many partitions: one request per leader, retried across leader moves until a deadline.

Shared by the consumer (positions, seeks, end offsets) and Admin (lag,
offset resets). Not thread-safe: the caller owns the network client.
"""

from __future__ import annotations

import time

from rill.client import protocol
from rill.client.errors import NotLeaderError, RequestTimeoutError, RillError, error_for_code
from rill.client.metadata import ClusterMetadata
from rill.client.network import NetworkClient, attempt_ms
from rill.client.types import TopicPartition

RETRY_BACKOFF_S = 0.1


def list_offsets(network: NetworkClient, metadata: ClusterMetadata, timestamps: dict[TopicPartition, int],
                 timeout_ms: int) -> dict[TopicPartition, int]:
    """The offset for each partition's timestamp (protocol.LATEST_TIMESTAMP, EARLIEST_TIMESTAMP or a time in
    ms; -1 where no record is that late). Retriable errors are retried until ``timeout_ms``; others raise."""
    deadline = time.monotonic() + timeout_ms / 1000
    found: dict[TopicPartition, int] = {}
    pending = dict(timestamps)
    error: RillError | None = None
    for _ in range(10_000):
        error = _ask_leaders(network, metadata, pending, found, deadline)
        pending = {tp: ts for tp, ts in pending.items() if tp not in found}
        if not pending:
            return found
        if time.monotonic() + RETRY_BACKOFF_S >= deadline:
            break
        time.sleep(RETRY_BACKOFF_S)
        try:
            metadata.refresh(network, sorted({tp.topic for tp in pending}), timeout_ms)
        except RillError as refresh_error:
            error = refresh_error
    raise error or RequestTimeoutError(f"no offsets for {len(pending)} partition(s) within {timeout_ms} ms")


def _ask_leaders(network: NetworkClient, metadata: ClusterMetadata, pending: dict[TopicPartition, int],
                 found: dict[TopicPartition, int], deadline: float) -> RillError | None:
    """One round, a request per leader; fills ``found`` and returns the last retriable error."""
    by_leader: dict[str, list[TopicPartition]] = {}
    last_error: RillError | None = None
    for tp in pending:
        address = metadata.leader_address(tp.topic, tp.partition)
        if address is None:
            last_error = NotLeaderError(f"{tp.topic}-{tp.partition} has no known leader now")
        else:
            by_leader.setdefault(address, []).append(tp)
    for address, asked in by_leader.items():
        request = protocol.ListOffsetsRequest([
            protocol.TopicListOffsets(topic.topic, [
                protocol.PartitionListOffsets(p, pending[TopicPartition(topic.topic, p)]) for p in topic.partitions])
            for topic in protocol.topic_partitions(asked)])
        try:
            answer = network.request(address, protocol.LIST_OFFSETS, request, attempt_ms(deadline))
        except RillError as error:
            if not error.retriable:
                raise
            last_error = error
            continue
        for topic in answer.topics:
            for result in topic.partitions:
                if not result.error_code:
                    found[TopicPartition(topic.topic, result.partition)] = result.offset
                    continue
                last_error = error_for_code(result.error_code, result.error_message)
                if not last_error.retriable:
                    raise last_error
    return last_error

