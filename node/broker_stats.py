"""Counters of what a broker did, kept on its hot paths and read by ``/metrics`` (node/http/metrics.py).

Each event costs a few dict increments at most, per request or per
partition, never per record: records are counted from batch headers
(AppendInfo for appends, one header read per batch for fetches). What is
kept:

- per topic, records and bytes appended by producers (the leader's produce
  path) and handed to consumers (the consumer fetch path);
- per client request type (``api``, protocol.Api.name): requests, a latency
  histogram (from reading the request to answering it, waits included) and
  errors by error class name, counting a request refused as a whole once and
  every failed partition of produce, fetch, list-offsets and offset-commit
  answers once;
- ISR shrinks and expands of the partitions this broker leads.

The values only grow (Prometheus counters; a restart starts them at zero),
except that a deleted topic's counters are dropped. Not thread-safe: used on
the broker's asyncio loop only, where the collector reads it too.
"""

from __future__ import annotations

import bisect
import functools
import struct
import time
from collections import defaultdict
from dataclasses import dataclass, field

from rill.client import protocol
from rill.client.batch import HEADER_SIZE, LOG_OVERHEAD, PATCH
from rill.client.errors import RillError, UnknownServerError, error_for_code
from rill.node.log.append_info import AppendInfo
from rill.node.metadata.state import PartitionState

# Upper bounds of the latency histogram's buckets, in seconds: sub-millisecond answers up to the
# longest waits a client may ask for (long-poll fetches, acks=all produces).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECORD_COUNT = struct.Struct(">i")
RECORD_COUNT_AT = HEADER_SIZE - RECORD_COUNT.size  # record_count is a batch header's last field
UNKNOWN_API = "unknown"  # a request whose type could not be read: bounds the label's values
# Answers whose per-partition results (topics[].partitions[].error_code) count as errors one by one.
PARTITION_RESULT_APIS = frozenset(api.name for api in (
    protocol.PRODUCE, protocol.FETCH, protocol.LIST_OFFSETS, protocol.OFFSET_COMMIT))


@dataclass
class LatencyHistogram:
    """Request latencies in LATENCY_BUCKETS_S (one count per bucket, not cumulative; the last is +Inf)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum_s += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, requests at or below it) per bucket, "+Inf" last: Prometheus' bucket form."""
        bounds = [repr(bound) for bound in LATENCY_BUCKETS_S] + ["+Inf"]
        total = 0
        buckets = []
        for bound, count in zip(bounds, self.counts):
            total += count
            buckets.append((bound, total))
        return buckets


@dataclass
class TopicTraffic:
    """Records and bytes of one topic, in from producers and out to consumers."""

    records_in: int = 0
    bytes_in: int = 0
    records_out: int = 0
    bytes_out: int = 0


class BrokerStats:
    """The counters (see the module docstring). Attributes are read by the metrics collector."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicTraffic] = defaultdict(TopicTraffic)
        self.requests: dict[str, int] = defaultdict(int)
        self.latency: dict[str, LatencyHistogram] = defaultdict(LatencyHistogram)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)  # (api, error class name) -> count
        self.isr_shrinks = 0
        self.isr_expands = 0

    # ---- data -------------------------------------------------------------------------------

    def produced(self, topic: str, info: AppendInfo) -> None:
        """A producer's batches were appended on the leader (a duplicate of an idempotent producer counts 0)."""
        traffic = self.topics[topic]
        traffic.records_in += info.record_count
        traffic.bytes_in += info.size_bytes

    def fetched(self, request: protocol.FetchRequest, response: protocol.FetchResponse) -> None:
        """A consumer's fetch is answered: count the batches it carries, from each partition's fetch offset on.

        The response lists the request's topics and partitions in the request's order.
        """
        for wanted_topic, topic in zip(request.topics, response.topics):
            records = size = 0
            for wanted, partition in zip(wanted_topic.partitions, topic.partitions):
                if partition.records:
                    size += len(partition.records)
                    records += records_from(partition.records, wanted.fetch_offset)
            if size:
                traffic = self.topics[topic.topic]
                traffic.records_out += records
                traffic.bytes_out += size

    def forget_topic(self, topic: str) -> None:
        """The topic was deleted: its counters go, so deleted topics do not pile up."""
        self.topics.pop(topic, None)

    # ---- requests -----------------------------------------------------------------------------

    def answered(self, api: str, started_s: float, response: object) -> None:
        """A request was answered with ``response`` (None: acks=0, nothing to send); ``started_s`` is the
        time.perf_counter() when it was read. Error codes in the answer count as errors."""
        self._count(api, started_s)
        code = getattr(response, "error_code", 0)
        if code:
            self.errors[(api, error_name(code))] += 1
        if api in PARTITION_RESULT_APIS and response is not None:
            for topic in response.topics:
                for partition in topic.partitions:
                    if partition.error_code:
                        self.errors[(api, error_name(partition.error_code))] += 1

    def failed(self, api: str, started_s: float, error: BaseException) -> None:
        """A request was refused as a whole with ``error`` (a bug in handling it counts as UnknownServerError)."""
        self._count(api, started_s)
        name = type(error).__name__ if isinstance(error, RillError) else UnknownServerError.__name__
        self.errors[(api, name)] += 1

    def _count(self, api: str, started_s: float) -> None:
        self.requests[api] += 1
        self.latency[api].observe(time.perf_counter() - started_s)

    # ---- ISR ----------------------------------------------------------------------------------

    def isr_changed(self, node_id: int, before: PartitionState, after: PartitionState) -> None:
        """A new partition state was applied: count an ISR shrink and/or expand if this broker led the
        partition before and after (its own AlterIsr, or the controller dropping a fenced broker)."""
        if before.leader != node_id or after.leader != node_id or before.isr == after.isr:
            return
        if set(before.isr) - set(after.isr):
            self.isr_shrinks += 1
        if set(after.isr) - set(before.isr):
            self.isr_expands += 1


def records_from(data: bytes, offset: int) -> int:
    """Records at ``offset`` or later in whole batches ``data`` (a log read), from batch headers only:
    the first batch may begin before the offset a consumer asked for. Reads two fields per batch."""
    count = 0
    position = 0
    while len(data) - position >= HEADER_SIZE:
        base_offset, batch_length, _ = PATCH.unpack_from(data, position)
        (records,) = RECORD_COUNT.unpack_from(data, position + RECORD_COUNT_AT)
        count += records if base_offset >= offset else max(0, min(records, base_offset + records - offset))
        position += max(batch_length + LOG_OVERHEAD, HEADER_SIZE)  # a damaged length cannot stall the loop
    return count


@functools.lru_cache(maxsize=256)
def error_name(code: int) -> str:
    """The class name of the error a wire code stands for (UnknownServerError for a code not known)."""
    return type(error_for_code(code)).__name__
