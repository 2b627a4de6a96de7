"""The measuring piece shared by the producer's and the consumer's metrics: a statistic over a recent window.

``WindowedStat`` keeps the count, sum and maximum of the values recorded in
the last WINDOW_S seconds, in one bucket per second, so a rate (sum per
second), an average (sum / count) and a maximum all forget what happened
longer ago, as Kafka's client metrics do with their 30 s samples. Values
are recorded per batch, per request or per poll, never per record: a
record is a list append or two, and its counting must not cost more. Not
thread-safe: its owner (ProducerMetrics, ConsumerMetrics) holds a lock.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

WINDOW_S = 30
MIN_ELAPSED_S = 1.0  # a client a few ms old must not report a rate extrapolated from one batch


class WindowedStat:
    """Count, sum and maximum of the values recorded over the last WINDOW_S seconds (1-second buckets)."""

    __slots__ = ("_buckets", "_started")

    def __init__(self, now: float):
        self._started = now
        self._buckets: deque[list] = deque()  # [second, count, sum, maximum], oldest first

    def record(self, value: float, now: float) -> None:
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
            bucket[1] += 1
            bucket[2] += value
            bucket[3] = max(bucket[3], value)
            return
        buckets.append([second, 1, value, value])
        self._forget_before(second)

    def _forget_before(self, second: int) -> None:
        """Drop the buckets that are no longer within the window ending in ``second``."""
        buckets = self._buckets
        while buckets and buckets[0][0] <= second - WINDOW_S:
            buckets.popleft()

    def summary(self, now: float) -> WindowSummary:
        """What the window holds now; zeros when nothing was recorded in it."""
        self._forget_before(int(now))
        count = 0
        total = maximum = 0.0
        for _, bucket_count, bucket_sum, bucket_maximum in self._buckets:
            count += bucket_count
            total += bucket_sum
            maximum = max(maximum, bucket_maximum)
        # The rate is over the window, or over the stat's life if that is shorter.
        elapsed = now - max(self._started, int(now) - WINDOW_S + 1)
        return WindowSummary(count, total, maximum, total / max(elapsed, MIN_ELAPSED_S))


class WindowSummary(NamedTuple):
    """A window's count of values, their sum, their maximum, and the sum per second."""

    count: int
    total: float
    maximum: float
    rate: float

    @property
    def average(self) -> float:
        """total / count, 0.0 when there is nothing to average."""
        return self.total / self.count if self.count else 0.0
