"""Checks of run_handler's arguments, in the convention of client/arguments.py.

A wrong type raises TypeError, the right type with a bad value ValueError,
at the call, before the consumer is polled or anything is written.
"""

from __future__ import annotations

import math
from typing import Any

from rill.client.arguments import MAX_INT32, check_topic, check_type
from rill.client.consumer import Consumer
from rill.client.retry_policy import Retry


def check_handler_arguments(consumer: Any, handle: Any, retry: Any, dead_letter_topic: Any, max_records: Any,
                            timeout: Any, batch: Any, producer: Any, stop: Any, max_parked: Any) -> None:
    """TypeError for a wrong type, ValueError for a bad value, before anything is read or sent."""
    check_type("consumer", consumer, Consumer)
    if not callable(handle):
        raise TypeError(f"handle must be a callable, got {type(handle).__name__}")
    if retry is not None:
        check_type("retry", retry, Retry)
    if dead_letter_topic is not None:
        check_topic(dead_letter_topic)
    if max_records is not None:
        _check_count("max_records", max_records)
    _check_count("max_parked", max_parked)
    if timeout is not None:
        check_type("timeout", timeout, (int, float))
        if math.isnan(timeout) or timeout < 0:
            raise ValueError(f"timeout must be None or 0 or more seconds, got {timeout}")
    check_type("batch", batch, bool)
    if producer is not None:
        from rill.client.producer import Producer

        check_type("producer", producer, Producer)
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError(f"stop must be a threading.Event (anything with is_set()), got {type(stop).__name__}")


def _check_count(name: str, value: Any) -> None:
    check_type(name, value, int)
    if not 1 <= value <= MAX_INT32:
        raise ValueError(f"{name} must be 1..{MAX_INT32}, got {value}")
