"""How late the broker's event loop runs what is due: a task that sleeps and measures its oversleep.

Heartbeats (every 200 ms) and the session timeout (3 s) share the loop
with request handling; a blocking call on the loop delays all of them. The
monitor sleeps ``interval_ms`` over and over and records how much later than
asked it woke (the lag), keeping the last ``window_s`` of samples (a bounded
deque). The broker reports p50, p99 and max of that window in NodeStatus
(``rill cluster status``, loadtest/bench.py) and logs them at DEBUG every
``log_every_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Callable, NamedTuple

log = logging.getLogger(__name__)

INTERVAL_MS = 50
WINDOW_S = 60
LOG_EVERY_S = 30


class LagSummary(NamedTuple):
    """Percentiles of the event-loop lag over the window, in milliseconds; zeros before any sample."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted samples (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class EventLoopLagMonitor:
    """Measures the lag of the loop it runs on. ``run`` until cancelled; ``summary`` at any time.

    Runs on the asyncio loop it measures; not thread-safe.
    """

    def __init__(self, interval_ms: int = INTERVAL_MS, window_s: float = WINDOW_S, log_every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_ms / 1000
        self._samples: deque[float] = deque(maxlen=max(1, int(window_s * 1000 / interval_ms)))
        self._log_every_s = log_every_s
        self._clock = clock

    def record(self, lag_ms: float) -> None:
        self._samples.append(max(0.0, lag_ms))

    def summary(self) -> LagSummary:
        ordered = sorted(self._samples)
        return LagSummary(percentile(ordered, 0.5), percentile(ordered, 0.99), ordered[-1] if ordered else 0.0,
                          len(ordered))

    async def run(self) -> None:
        """Sleep, measure the oversleep, repeat; log the summary at DEBUG now and then."""
        last_log = self._clock()
        while True:
            asked_at = self._clock()
            await asyncio.sleep(self._interval_s)
            woke_at = self._clock()
            self.record((woke_at - asked_at - self._interval_s) * 1000)
            if woke_at - last_log >= self._log_every_s and log.isEnabledFor(logging.DEBUG):
                last_log = woke_at
                summary = self.summary()
                log.debug("event loop lag over the last %d samples: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                          summary.samples, summary.p50_ms, summary.p99_ms, summary.max_ms)
