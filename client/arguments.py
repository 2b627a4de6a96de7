"""Checks of the client API's arguments, so that a wrong call fails at the call, with a clear error.

A record's parts (``Producer.send``) and call arguments follow Python's
convention: a wrong type raises TypeError, the right type with a bad value
ValueError. Client settings (constructor arguments) raise
InvalidConfigError, whatever is wrong with them. Without these checks a
wrong value would pass ``send`` and fail later on the producer's sender
thread, far from the call that caused it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from rill.client.errors import InvalidConfigError
from rill.client.topic_names import topic_name_problem

MAX_INT32 = 2**31 - 1
MAX_TIMESTAMP_MS = 2**63 - 1  # a batch stores timestamps as signed 64-bit integers
BYTES_LIKE = (bytes, bytearray, memoryview)


def record_bytes(name: str, data: Any) -> bytes | None:
    """A record's key or value as bytes; bytearray and memoryview are copied, so later changes by the
    caller do not change a record already sent."""
    if data is None:
        return None
    if isinstance(data, BYTES_LIKE):
        return bytes(data)
    raise TypeError(f"{name} must be bytes, bytearray, memoryview or None, got {type(data).__name__}")


def record_headers(headers: Any) -> tuple[dict[str, bytes] | None, int]:
    """Headers as a new dict of str name to bytes value, and their encoded size in bytes.

    Accepts a mapping or a list of (name, value) pairs. A name may appear once (consumers see headers
    as a mapping); names must be encodable as UTF-8.
    """
    if isinstance(headers, Mapping):
        pairs: Iterable = headers.items()
    elif isinstance(headers, (list, tuple)):
        pairs = headers
    else:
        raise TypeError(f"headers must be a dict or a list of (str, bytes) pairs, got {type(headers).__name__}")
    result: dict[str, bytes] = {}
    size = 0
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"each header must be a (str, bytes) pair, got {pair!r:.80}")
        name, value = pair
        if not isinstance(name, str):
            raise TypeError(f"a header name must be a str, got {type(name).__name__}")
        if not isinstance(value, BYTES_LIKE):
            raise TypeError(f"header {name!r:.80} must have a bytes value, got {type(value).__name__}")
        if name in result:
            raise ValueError(f"header {name!r:.80} appears twice")
        try:
            encoded_name = name.encode()
        except UnicodeEncodeError:
            raise ValueError(f"header name {name!r:.80} is not encodable as UTF-8") from None
        result[name] = bytes(value)
        size += len(encoded_name) + len(result[name])
    return result or None, size


def check_topic(topic: Any) -> None:
    """A topic name: a str the brokers accept (client/topic_names.py: 1-249 of [a-zA-Z0-9._-], not '.' or '..')."""
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__}")
    problem = topic_name_problem(topic)
    if problem is not None:
        raise ValueError(problem)


def check_partition(partition: Any) -> None:
    """A partition index: a non-negative int."""
    check_type("partition", partition, int)
    if partition < 0:
        raise ValueError(f"partition must be >= 0, got {partition}")


def check_timestamp_ms(timestamp_ms: Any) -> None:
    """A record timestamp: milliseconds since the epoch, 0 .. 2**63-1."""
    check_type("timestamp_ms", timestamp_ms, int)
    if not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp_ms must be 0..{MAX_TIMESTAMP_MS}, got {timestamp_ms}")


def check_type(name: str, value: Any, expected: type | tuple[type, ...]) -> None:
    """TypeError unless ``value`` is an instance of ``expected``; a bool never counts as an int."""
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        raise TypeError(f"{name} must be {_names(kinds)}, got bool")
    if not isinstance(value, kinds):
        raise TypeError(f"{name} must be {_names(kinds)}, got {type(value).__name__}")


def check_timeout_s(name: str, timeout: Any) -> float | None:
    """A timeout in seconds: None (wait for ever) or a number 0 .. threading.TIMEOUT_MAX."""
    if timeout is None:
        return None
    check_type(name, timeout, (int, float))
    if math.isnan(timeout) or not 0 <= timeout <= threading.TIMEOUT_MAX:
        raise ValueError(f"{name} must be None or 0..{threading.TIMEOUT_MAX:g} seconds, got {timeout}")
    return float(timeout)


def config_int(name: str, value: Any, minimum: int, maximum: int = MAX_INT32) -> int:
    """An integer setting within [minimum, maximum]; InvalidConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidConfigError(f"{name} must be an integer {minimum}..{maximum}, got {value!r:.80}")
    return value


def config_str(name: str, value: Any) -> str:
    """A string setting; InvalidConfigError otherwise."""
    if not isinstance(value, str):
        raise InvalidConfigError(f"{name} must be a str, got {value!r:.80}")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(kind.__name__ for kind in kinds)
