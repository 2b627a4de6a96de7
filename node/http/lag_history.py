"""The last minutes of each consumer group's total lag, for the console's lag chart.

Sampled on the serving node only while someone looks at a group (each
look at it adds a sample, at most one per SAMPLE_INTERVAL_S), so watching a
group costs one describe per look and nothing otherwise. Kept in memory:
samples of the last HISTORY_S, for at most MAX_GROUPS groups (the one looked
at least recently goes first). A restart of the node forgets them.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

SAMPLE_INTERVAL_S = 2.0
HISTORY_S = 15 * 60
MAX_GROUPS = 64
SAMPLES_MAX = int(HISTORY_S / SAMPLE_INTERVAL_S) + 1

Sample = tuple[int, int]  # (wall-clock time in ms, total lag)


class LagHistory:
    """Each group's lag samples, oldest first. Not thread-safe: used on the broker's loop."""

    def __init__(self, clock_s: Callable[[], float] = time.time):
        self._clock_s = clock_s
        self._groups: OrderedDict[str, deque[Sample]] = OrderedDict()

    def record(self, group_id: str, total_lag: int) -> list[Sample]:
        """Add a sample of the group's lag (unless the last is younger than SAMPLE_INTERVAL_S); its history."""
        now_ms = int(self._clock_s() * 1000)
        samples = self._groups.pop(group_id, None) or deque(maxlen=SAMPLES_MAX)
        self._groups[group_id] = samples
        while len(self._groups) > MAX_GROUPS:
            self._groups.popitem(last=False)
        if not samples or now_ms - samples[-1][0] >= SAMPLE_INTERVAL_S * 1000:
            samples.append((now_ms, total_lag))
        while samples and now_ms - samples[0][0] > HISTORY_S * 1000:
            samples.popleft()
        return list(samples)
