"""The producer's metrics: what it sent, how fast, how long brokers took, what failed, what waits.

The sender thread counts, per request and per batch (never per record: a
batch's record count is one attribute read); ``Producer.metrics()`` reads
a snapshot from any thread. One lock guards the counters: taken once per
request and per finished batch, and once per snapshot. Rates, averages
and maximums are over the last 30 seconds (client/client_metrics.py), as
Kafka's are; totals count since the producer was built.

``METRICS`` names every key of the snapshot with its meaning: the
documentation, and the help text of the Prometheus exporter
(client/prometheus.py).
"""

from __future__ import annotations

import threading
import time

from rill.client.client_metrics import WindowedStat
from rill.client.errors import RillError

METRICS: dict[str, str] = {
    "records_sent_total": "records the brokers acknowledged (acks=0: handed to the connection)",
    "bytes_sent_total": "bytes of those records' batches as sent (encoded and compressed)",
    "record_send_rate": "records acknowledged per second, over the last 30 s",
    "byte_send_rate": "batch bytes acknowledged per second, over the last 30 s",
    "batch_size_avg": "bytes per acknowledged batch (encoded and compressed), over the last 30 s",
    "batch_records_avg": "records per acknowledged batch, over the last 30 s",
    "requests_total": "produce requests sent",
    "request_latency_avg_ms": "milliseconds from a produce request's sending to its answer, over the last 30 s",
    "request_latency_max_ms": "the longest of those, over the last 30 s",
    "record_retries_total": "records sent again after a retriable error (a batch of n retried once counts n)",
    "record_errors_total": "records that failed for good (their future raised)",
    "record_errors_by_type": "records that failed for good, by error class name (a dict; sums to record_errors_total)",
    "buffer_used_bytes": "bytes of records appended and not yet acknowledged, as buffer_memory counts them",
    "buffer_memory_bytes": "the buffer_memory setting",
    "buffer_use_ratio": "buffer_used_bytes / buffer_memory_bytes; send() blocks at 1",
    "records_queued": "records appended and not yet sent (open batches, batches ready or waiting to retry)",
    "records_in_flight": "records in produce requests sent and not yet answered",
}


class ProducerMetrics:
    """Counters the sender thread updates and any thread snapshots. Thread-safe (one lock)."""

    def __init__(self, buffer_memory: int):
        now = time.monotonic()
        self._lock = threading.Lock()
        self._buffer_memory = buffer_memory
        self._batch_records = WindowedStat(now)  # value: records per acknowledged batch
        self._batch_bytes = WindowedStat(now)  # value: encoded bytes per acknowledged batch
        self._latency = WindowedStat(now)  # value: seconds per answered request
        self._records_sent = 0
        self._bytes_sent = 0
        self._requests = 0
        self._retries = 0
        self._errors: dict[str, int] = {}

    # ---- the sender's hooks -------------------------------------------------------------

    def request_sent(self) -> None:
        with self._lock:
            self._requests += 1

    def request_answered(self, latency_s: float) -> None:
        """A produce request got its answer (whatever the answer said) ``latency_s`` after it was sent."""
        with self._lock:
            self._latency.record(latency_s, time.monotonic())

    def batch_retried(self, record_count: int) -> None:
        with self._lock:
            self._retries += record_count

    def batch_finished(self, record_count: int, size_bytes: int, error: RillError | None) -> None:
        """A batch was acknowledged (``error`` None; ``size_bytes`` its encoded size) or failed for good."""
        with self._lock:
            if error is not None:
                name = type(error).__name__
                self._errors[name] = self._errors.get(name, 0) + record_count
                return
            now = time.monotonic()
            self._records_sent += record_count
            self._bytes_sent += size_bytes
            self._batch_records.record(record_count, now)
            self._batch_bytes.record(size_bytes, now)

    # ---- reading ---------------------------------------------------------------------------

    def snapshot(self, buffer_used_bytes: int, records_queued: int, records_in_flight: int) -> dict[str, object]:
        """Every metric of METRICS as a plain dict (ints and floats; ``record_errors_by_type`` a dict of ints).

        The arguments are what the accumulator holds now (its own lock guards them).
        """
        now = time.monotonic()
        with self._lock:
            records = self._batch_records.summary(now)
            sizes = self._batch_bytes.summary(now)
            latency = self._latency.summary(now)
            snapshot = {
                "records_sent_total": self._records_sent,
                "bytes_sent_total": self._bytes_sent,
                "record_send_rate": records.rate,
                "byte_send_rate": sizes.rate,
                "batch_size_avg": sizes.average,
                "batch_records_avg": records.average,
                "requests_total": self._requests,
                "request_latency_avg_ms": latency.average * 1000,
                "request_latency_max_ms": latency.maximum * 1000,
                "record_retries_total": self._retries,
                "record_errors_total": sum(self._errors.values()),
                "record_errors_by_type": dict(self._errors),
            }
        snapshot.update({
            "buffer_used_bytes": buffer_used_bytes,
            "buffer_memory_bytes": self._buffer_memory,
            "buffer_use_ratio": buffer_used_bytes / self._buffer_memory,
            "records_queued": records_queued,
            "records_in_flight": records_in_flight,
        })
        return snapshot
