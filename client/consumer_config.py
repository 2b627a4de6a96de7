"""The Consumer's settings, checked once when the consumer is created.

Kafka's names in snake_case; the defaults live in ``Consumer.__init__``'s
signature, where users read them. Every bad setting, of the wrong type or
out of range, raises InvalidConfigError before the consumer opens a
socket, so a mistake shows at construction and not at the first poll.
Integers are bounded like Kafka's int settings (at most 2**31 - 1, arguments.MAX_INT32), which
also keeps them inside what the wire format carries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rill.client.arguments import config_int, config_str
from rill.client.consumer_arguments import check_subscription
from rill.client.errors import InvalidConfigError
from rill.client.serialization import DeserializerLike, check_deserializer
from rill.client.types import TopicPartition

RESET_STRATEGIES = ("earliest", "latest", "error", "none")  # "none" is Kafka's name for "error"
ASSIGNORS = ("sticky", "range", "roundrobin")
RebalanceCallback = Callable[[Any, list[TopicPartition]], None]

POSITIVE_INTS = ("auto_commit_interval_ms", "max_poll_records", "session_timeout_ms", "heartbeat_interval_ms",
                 "fetch_min_bytes", "fetch_max_bytes", "max_partition_fetch_bytes", "request_timeout_ms")
BOOLS = ("enable_auto_commit", "check_crcs")
CALLBACKS = ("on_assign", "on_revoke")
DESERIALIZERS = ("key_deserializer", "value_deserializer")


@dataclass(frozen=True)
class ConsumerConfig:
    """Every Consumer setting but the bootstrap list and the subscription; see the README's table."""

    group_id: str | None
    enable_auto_commit: bool
    auto_commit_interval_ms: int
    auto_offset_reset: str
    max_poll_records: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    assignor: str
    on_assign: RebalanceCallback | None
    on_revoke: RebalanceCallback | None
    fetch_min_bytes: int
    fetch_max_wait_ms: int
    fetch_max_bytes: int
    max_partition_fetch_bytes: int
    request_timeout_ms: int
    check_crcs: bool
    client_id: str
    key_deserializer: DeserializerLike | None = None
    value_deserializer: DeserializerLike | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InvalidConfigError for the first bad setting, naming it and the value given."""
        for name in POSITIVE_INTS:
            config_int(name, getattr(self, name), 1)
        config_int("fetch_max_wait_ms", self.fetch_max_wait_ms, 0)
        for name in BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise InvalidConfigError(f"{name} must be True or False, got {getattr(self, name)!r:.120}")
        for name in CALLBACKS:
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise InvalidConfigError(f"{name} must be a callable(consumer, partitions), got {getattr(self, name)!r:.120}")
        for name in DESERIALIZERS:
            check_deserializer(name, getattr(self, name))
        _check_choice("auto_offset_reset", self.auto_offset_reset, RESET_STRATEGIES)
        _check_choice("assignor", self.assignor, ASSIGNORS)
        if self.group_id is not None and (not isinstance(self.group_id, str) or not self.group_id):
            raise InvalidConfigError(f"group_id must be a non-empty string, got {self.group_id!r:.120}")
        config_str("client_id", self.client_id)
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise InvalidConfigError("heartbeat_interval_ms must be lower than session_timeout_ms")

    @property
    def raises_without_offset(self) -> bool:
        """Whether a partition with no position raises NoOffsetForPartitionError instead of being reset."""
        return self.auto_offset_reset in ("error", "none")


def check_bootstrap(bootstrap: object) -> str:
    if not isinstance(bootstrap, str):
        raise InvalidConfigError(f"bootstrap must be a 'host:port[,host:port...]' string, got {bootstrap!r:.120}")
    return bootstrap


def check_settings_subscription(topics: object, pattern: object) -> tuple[list[str], str | None]:
    """The constructor's ``topics`` and ``pattern``: like ``subscribe``'s, but InvalidConfigError when bad."""
    try:
        return check_subscription(topics, pattern)
    except (TypeError, ValueError) as error:
        raise InvalidConfigError(str(error)) from None


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise InvalidConfigError(f"{name} must be one of {choices}, got {value!r:.120}")
