"""What ``run_handler`` needs from inside a Consumer: its settings, and a place in its revoke callback.

The helper owns the consumer's commits while it runs, so it must see
settings the Consumer keeps to itself (group, auto-commit, deserializers,
bootstrap list) and must commit a partition before it is given up: it
wraps the rebalancer's ``on_revoke`` (the user's callback still runs,
after the helper's commit) and restores it when it returns. Kept in this
one module so the Consumer's internals are read in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rill.client.consumer import Consumer
from rill.client.errors import ConsumerClosedError, InvalidConfigError
from rill.client.types import TopicPartition

RevokeHook = Callable[[list[TopicPartition]], None]


def is_closed(consumer: Consumer) -> bool:
    return consumer._closed


def check_handler_consumer(consumer: Consumer) -> None:
    """The consumer must be open, in a group, without auto-commit, and reading something."""
    if consumer._closed:
        raise ConsumerClosedError("the consumer is closed")
    config = consumer._config
    if config.group_id is None:
        raise InvalidConfigError("run_handler commits offsets: the consumer needs a group_id")
    if config.enable_auto_commit:
        raise InvalidConfigError("run_handler commits each offset only once its record is handled or dead-lettered: "
                                 "create the consumer with enable_auto_commit=False")
    if not consumer._subscriptions.subscribed and not consumer.assignment():
        raise InvalidConfigError("the consumer reads nothing: give it topics (or a pattern), or assign partitions")


def subscribed_topics(consumer: Consumer) -> set[str]:
    """The topics named in the subscription (a pattern's topics are known only once assigned)."""
    return set(consumer._subscriptions.topics)


def bootstrap_of(consumer: Consumer) -> str:
    return ",".join(consumer._metadata.bootstrap)


def group_of(consumer: Consumer) -> str:
    return consumer._config.group_id


def request_timeout_ms(consumer: Consumer) -> int:
    return consumer._config.request_timeout_ms


def deserializes(consumer: Consumer) -> bool:
    """Whether the records poll returns may differ from the stored bytes (a key or value deserializer is set)."""
    config = consumer._config
    return (getattr(config, "key_deserializer", None) is not None
            or getattr(config, "value_deserializer", None) is not None)


def wrap_on_revoke(consumer: Consumer, hook: RevokeHook) -> Callable[[], None]:
    """Run ``hook(partitions)`` before the user's on_revoke; returns the function that undoes it."""
    rebalancer = consumer._rebalancer
    if rebalancer is None:  # partitions assigned by hand are never revoked
        return lambda: None
    original = rebalancer._on_revoke

    def on_revoke(owner: Any, partitions: list[TopicPartition]) -> None:
        try:
            hook(partitions)
        finally:
            if original is not None:
                original(owner, partitions)

    rebalancer._on_revoke = on_revoke

    def restore() -> None:
        rebalancer._on_revoke = original

    return restore
