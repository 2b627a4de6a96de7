"""Per-second rates of growing counters (log end offsets, committed offsets) between two looks at them.

The console's in and out rates cost the brokers nothing per record: each
look at the topics hands the sampler every counter's current value, and the
rate of a counter is its growth since the previous sample divided by the
time between them. A sample is kept only while someone looks (one baseline,
replaced at most every MIN_WINDOW_S); one older than MAX_WINDOW_S is too
old to average over and starts afresh. A counter that went down (a topic
re-created, a group's offsets reset) counts as 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)

MIN_WINDOW_S = 1.0
MAX_WINDOW_S = 120.0


class RateSampler(Generic[Key]):
    """Rates between the baseline sample and the current one. Not thread-safe: used on the broker's loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._baseline: tuple[float, dict[Key, int]] | None = None
        self._rates: dict[Key, float] | None = None

    def rates(self, values: Mapping[Key, int]) -> dict[Key, float] | None:
        """Per-second growth of each counter known in both samples; None at a first look (nothing to compare)."""
        now = self._clock()
        if self._baseline is None or now - self._baseline[0] > MAX_WINDOW_S:
            self._baseline, self._rates = (now, dict(values)), None
            return None
        taken_at, before = self._baseline
        elapsed = now - taken_at
        if elapsed < MIN_WINDOW_S:
            return self._rates
        self._rates = {key: max(0, value - before[key]) / elapsed for key, value in values.items() if key in before}
        self._baseline = (now, dict(values))
        return self._rates
