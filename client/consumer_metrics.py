"""The consumer's metrics: what it read, how fast, how long fetches and commits took, how far behind it is.

The consumer's thread counts, per fetch response, per partition answer,
per poll and per commit (never per record); ``Consumer.metrics()`` reads a
snapshot, and so may another thread (a Prometheus scrape): one lock
guards the counters. Rates, averages and maximums are over the last 30
seconds (client/client_metrics.py), as Kafka's are; totals count since the
consumer was built.

Lag is Kafka's records-lag: a partition's high watermark, as the last fetch
response for it reported, minus the consumer's position (the offset of the
next record poll returns), taken when a fetch answers and when poll moves
the position. Records fetched and not yet returned by poll count as lag.

``METRICS`` names every key of the snapshot with its meaning: the
documentation, and the help text of the Prometheus exporter
(client/prometheus.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from rill.client.client_metrics import WindowedStat
from rill.client.types import TopicPartition

METRICS: dict[str, str] = {
    "records_consumed_total": "records poll returned",
    "bytes_consumed_total": "bytes of record batches fetch responses carried",
    "records_consumed_rate": "records poll returned per second, over the last 30 s",
    "bytes_consumed_rate": "fetched batch bytes per second, over the last 30 s",
    "fetch_requests_total": "fetch requests sent",
    "fetch_latency_avg_ms": "milliseconds from a fetch request's sending to its answer (the broker waits up to "
                            "fetch_max_wait_ms for data), over the last 30 s",
    "fetch_latency_max_ms": "the longest of those, over the last 30 s",
    "records_lag": "per assigned partition (a dict keyed \"topic-partition\"): high watermark minus position",
    "records_lag_max": "the largest records_lag, 0 with none",
    "commits_total": "offset commits the coordinator accepted",
    "commit_errors_total": "offset commits that failed",
    "commit_latency_avg_ms": "milliseconds from an accepted commit's sending to its answer, over the last 30 s",
    "commit_latency_max_ms": "the longest of those, over the last 30 s",
}


class ConsumerMetrics:
    """Counters the consumer's thread updates and any thread snapshots. Thread-safe (one lock)."""

    def __init__(self) -> None:
        now = time.monotonic()
        self._lock = threading.Lock()
        self._records = WindowedStat(now)  # value: records per poll that returned some
        self._bytes = WindowedStat(now)  # value: batch bytes per fetch response
        self._fetch_latency = WindowedStat(now)  # value: seconds per answered fetch
        self._commit_latency = WindowedStat(now)  # value: seconds per accepted commit
        self._records_total = 0
        self._bytes_total = 0
        self._fetches = 0
        self._commits = 0
        self._commit_errors = 0
        self._high_watermarks: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}

    # ---- the consumer's hooks ---------------------------------------------------------------

    def fetch_sent(self) -> None:
        with self._lock:
            self._fetches += 1

    def fetch_answered(self, latency_s: float, size_bytes: int) -> None:
        """A fetch response carrying ``size_bytes`` of record batches came ``latency_s`` after its request."""
        now = time.monotonic()
        with self._lock:
            self._fetch_latency.record(latency_s, now)
            self._bytes.record(size_bytes, now)
            self._bytes_total += size_bytes

    def partition_fetched(self, partition: TopicPartition, high_watermark: int, position: int) -> None:
        """A fetch answer for ``partition`` reported its high watermark; the consumer's position is ``position``."""
        with self._lock:
            self._high_watermarks[partition] = high_watermark
            self._positions[partition] = position

    def records_returned(self, count: int, positions: Iterable[tuple[TopicPartition, int]]) -> None:
        """poll returned ``count`` records, moving these partitions to these positions."""
        with self._lock:
            self._records.record(count, time.monotonic())
            self._records_total += count
            self._positions.update(positions)

    def partition_forgotten(self, partition: TopicPartition) -> None:
        """The partition is no longer assigned: it has no lag to report."""
        with self._lock:
            self._high_watermarks.pop(partition, None)
            self._positions.pop(partition, None)

    def commit_done(self, latency_s: float | None) -> None:
        """A commit was accepted ``latency_s`` after it was sent, or failed (None)."""
        with self._lock:
            if latency_s is None:
                self._commit_errors += 1
                return
            self._commits += 1
            self._commit_latency.record(latency_s, time.monotonic())

    # ---- reading -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Every metric of METRICS as a plain dict (ints and floats; ``records_lag`` a dict of ints)."""
        now = time.monotonic()
        with self._lock:
            records = self._records.summary(now)
            sizes = self._bytes.summary(now)
            fetches = self._fetch_latency.summary(now)
            commits = self._commit_latency.summary(now)
            lag = {f"{tp.topic}-{tp.partition}": max(0, high_watermark - self._positions[tp])
                   for tp, high_watermark in sorted(self._high_watermarks.items()) if tp in self._positions}
            return {
                "records_consumed_total": self._records_total,
                "bytes_consumed_total": self._bytes_total,
                "records_consumed_rate": records.rate,
                "bytes_consumed_rate": sizes.rate,
                "fetch_requests_total": self._fetches,
                "fetch_latency_avg_ms": fetches.average * 1000,
                "fetch_latency_max_ms": fetches.maximum * 1000,
                "records_lag": lag,
                "records_lag_max": max(lag.values(), default=0),
                "commits_total": self._commits,
                "commit_errors_total": self._commit_errors,
                "commit_latency_avg_ms": commits.average * 1000,
                "commit_latency_max_ms": commits.maximum * 1000,
            }
