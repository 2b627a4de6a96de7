"""Retry: how often and how patiently ``run_handler`` tries a record again before dead-lettering it.

``attempts`` counts every call of the handler for a record, the first one
included (1: never retry). Between attempts the record waits ``backoff_ms``,
then ``multiplier`` times longer each time, at most ``backoff_max_ms``
(exponential backoff without jitter, so tests and budgets are exact). Only
exceptions that are instances of ``retry_on`` are retried; any other
exception dead-letters the record at once: a bug that fails the same way
every time gains nothing from waiting.

The retry budget is the sum of the waits (plus the handler's own time):
the longest a record can be held back by its retries, and so the longest
it delays the later records of its key (client/handler.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rill.client.arguments import MAX_INT32, check_type


@dataclass(frozen=True)
class Retry:
    """A retry policy: ``Retry(attempts=3, backoff_ms=100)`` tries a record 3 times, waiting 100 then 200 ms.

    Bad values raise TypeError (wrong type) or ValueError (out of range) at construction.
    """

    attempts: int = 3
    backoff_ms: int = 100
    backoff_max_ms: int = 10_000
    multiplier: float = 2.0
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        _check_int("attempts", self.attempts, 1)
        _check_int("backoff_ms", self.backoff_ms, 0)
        _check_int("backoff_max_ms", self.backoff_max_ms, 0)
        if self.backoff_max_ms < self.backoff_ms:
            raise ValueError(f"backoff_max_ms ({self.backoff_max_ms}) must be at least backoff_ms ({self.backoff_ms})")
        check_type("multiplier", self.multiplier, (int, float))
        if math.isnan(self.multiplier) or not 1.0 <= self.multiplier <= 1000.0:
            raise ValueError(f"multiplier must be 1.0..1000.0, got {self.multiplier}")
        object.__setattr__(self, "retry_on", _exception_types(self.retry_on))

    def retries(self, error: BaseException, attempts_made: int) -> bool:
        """Whether a record whose ``attempts_made``-th attempt raised ``error`` gets another attempt."""
        return attempts_made < self.attempts and isinstance(error, self.retry_on)

    def backoff_s(self, attempts_made: int) -> float:
        """Seconds to wait after the ``attempts_made``-th failed attempt before the next one."""
        try:
            delay_ms = self.backoff_ms * self.multiplier ** (attempts_made - 1)
        except OverflowError:  # far past backoff_max_ms
            delay_ms = math.inf
        return min(delay_ms, self.backoff_max_ms) / 1000


def _check_int(name: str, value: object, minimum: int) -> None:
    check_type(name, value, int)
    if not minimum <= value <= MAX_INT32:
        raise ValueError(f"{name} must be {minimum}..{MAX_INT32}, got {value}")


def _exception_types(retry_on: object) -> tuple[type[BaseException], ...]:
    """``retry_on`` as a non-empty tuple of exception classes (one class alone is accepted, as by ``except``)."""
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not kinds:
        raise ValueError("retry_on must name at least one exception class")
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"retry_on must be exception classes, got {kind!r:.80}")
    return kinds
