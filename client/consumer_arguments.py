"""Checks of the Consumer's call arguments: partitions, offsets, subscriptions, poll's timeout.

Built on client/arguments.py and following its convention: a wrong type
raises TypeError, the right type with a bad value ValueError (the
constructor turns both into InvalidConfigError, as for every setting).
They run first thing in a public method, before any state changes or a
request is sent, so bad input fails at the call, never later inside poll
or as a hang.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from rill.client.arguments import check_topic, check_type
from rill.client.types import TopicPartition


def check_partition(name: str, value: Any) -> TopicPartition:
    """A TopicPartition with a valid topic name and partition number (msgspec does not check the field
    types when one is built)."""
    check_type(name, value, TopicPartition)
    try:
        check_topic(value.topic)
        check_type("partition", value.partition, int)
    except TypeError as error:
        raise TypeError(f"{name}: {error}, in {value!r:.120}") from None
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    if value.partition < 0:
        raise ValueError(f"{name}: a partition number is 0 or more, got {value!r:.120}")
    return value


def check_partitions(name: str, value: Any) -> list[TopicPartition]:
    """A collection (list, set, dict keys...) of TopicPartitions, as a list."""
    if isinstance(value, (str, bytes, TopicPartition)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a collection of TopicPartition, got {type(value).__name__}")
    return [check_partition(f"each of {name}", item) for item in value]


def check_partition_ints(name: str, value: Any) -> dict[TopicPartition, int]:
    """A mapping of TopicPartition to an integer (an offset, a timestamp), as a dict."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of TopicPartition to int, got {type(value).__name__}")
    result = {}
    for tp, number in value.items():
        check_partition(f"a key of {name}", tp)
        check_type(f"the value for {tp.topic}-{tp.partition} in {name}", number, int)
        result[tp] = number
    return result


def check_poll_timeout(timeout: Any) -> float:
    """poll's wait in seconds: an int or float from 0 (infinity: until records come)."""
    check_type("timeout", timeout, (int, float))
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be 0 or more seconds, got {timeout}")
    return float(timeout)


def check_subscription(topics: Any, pattern: Any) -> tuple[list[str], str | None]:
    """Topic names (any collection of valid names, not one string) and a pattern (a regular expression
    over whole topic names; "" or None: none)."""
    if pattern is not None:
        check_type("pattern", pattern, str)
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"bad subscription pattern {pattern!r:.120}: {error}") from None
    if topics is None:
        return [], pattern or None
    if isinstance(topics, (str, bytes)):
        raise TypeError(f"topics is a collection of topic names, got the string {topics!r:.120}")
    if not isinstance(topics, Iterable):
        raise TypeError(f"topics must be a collection of topic names, got {type(topics).__name__}")
    names = list(topics)
    for topic in names:
        check_topic(topic)
    return names, pattern or None
