"""Exponential retry backoff with jitter, as Kafka's clients wait between retries (KIP-580).

The n-th retry waits ``min(backoff_ms * 2**(n-1), backoff_max_ms)`` times a
random factor in [0.8, 1.2]: a failure that lasts (a leader election, a lost
broker) is retried ever less often, and the jitter keeps many producers that
failed at the same moment from retrying in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable

JITTER = 0.2
MAX_DOUBLINGS = 62  # past this every setting is capped already; keeps 2**n small


class RetryBackoff:
    """How long to wait before a retry. ``uniform(low, high)`` draws the jitter (``random.uniform``;
    tests pass their own)."""

    __slots__ = ("backoff_max_ms", "backoff_ms", "uniform")

    def __init__(self, backoff_ms: int, backoff_max_ms: int,
                 uniform: Callable[[float, float], float] = random.uniform):
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = max(backoff_ms, backoff_max_ms)
        self.uniform = uniform

    def delay_ms(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first retry) in milliseconds."""
        doublings = min(max(retry - 1, 0), MAX_DOUBLINGS)
        capped = min(self.backoff_ms * (1 << doublings), self.backoff_max_ms)
        return capped * self.uniform(1 - JITTER, 1 + JITTER)

    def delay_s(self, retry: int) -> float:
        """``delay_ms`` in seconds, for deadlines on the monotonic clock."""
        return self.delay_ms(retry) / 1000
