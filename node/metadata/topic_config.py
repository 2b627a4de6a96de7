"""Topic settings: Kafka's names, their defaults, and their validation.

A topic's config travels and is stored as ``dict[str, str]`` (as in Kafka);
:func:`validate_topic_config` checks every name and value and returns the
full config with defaults filled in, and :func:`log_config` turns it into
the storage layer's :class:`LogConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rill.client.errors import InvalidConfigError
from rill.node.log.config import LogConfig


@dataclass(frozen=True)
class Setting:
    """One topic setting: its default (as a string) and how to parse and check a value."""

    default: str
    parse: Callable[[str], object]
    doc: str


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return parse


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError("must be true or false")
    return text.lower() == "true"


CLEANUP_POLICIES = frozenset({"compact", "delete"})


def _cleanup_policy(text: str) -> frozenset[str]:
    """Kafka's list: "delete", "compact", or both, comma-separated in either order."""
    policies = [policy.strip() for policy in text.split(",")]
    if not set(policies) <= CLEANUP_POLICIES or len(set(policies)) != len(policies):
        raise ValueError("must be delete, compact, or compact,delete")
    return frozenset(policies)


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("must be from 0 to 1")
    return value


def _optional_positive(text: str) -> int | None:
    """-1 or empty means 'never'; otherwise a positive integer."""
    if text in ("", "-1"):
        return None
    return _integer(1)(text)


SETTINGS: dict[str, Setting] = {
    "cleanup.policy": Setting("delete", _cleanup_policy,
                              "delete: whole old segments go by retention; compact: the latest record per key stays"),
    "delete.retention.ms": Setting("86400000", _integer(0), "how long compaction keeps tombstones (null values)"),
    "min.cleanable.dirty.ratio": Setting("0.5", _ratio,
                                         "compact once this fraction of the log was written since the last compaction"),
    "min.compaction.lag.ms": Setting("0", _integer(0), "records newer than this are not compacted"),
    "retention.ms": Setting("604800000", _integer(-1), "delete segments older than this; -1 keeps forever"),
    "retention.bytes": Setting("-1", _integer(-1),
                               "delete oldest segments beyond this size per partition; -1: no limit"),
    "segment.bytes": Setting("1073741824", _integer(14), "roll a new segment at this size"),
    "segment.ms": Setting("604800000", _integer(1), "roll a new segment after this long"),
    "segment.index.bytes": Setting("10485760", _integer(8), "offset index size at which a segment rolls"),
    "index.interval.bytes": Setting("4096", _integer(0), "bytes of log between two offset index entries"),
    "max.message.bytes": Setting("1048588", _integer(0), "largest record batch the topic accepts"),
    "flush.messages": Setting("-1", _optional_positive, "fsync after this many records; -1: leave it to the OS"),
    "flush.ms": Setting("-1", _optional_positive, "fsync after this long; -1: leave it to the OS"),
    "min.insync.replicas": Setting("1", _integer(1), "replicas that must have a record for acks=all"),
    "unclean.leader.election.enable": Setting("false", _boolean, "allow an out-of-sync replica to lead"),
}


def validate_topic_config(config: dict[str, object], defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The full config of a topic: every setting, checked, as strings. Raises InvalidConfigError."""
    full = {name: setting.default for name, setting in SETTINGS.items()}
    full.update(defaults or {})
    for name, value in config.items():
        if name not in SETTINGS:
            raise InvalidConfigError(f"unknown topic config {name!r}")
        full[name] = str(value).lower() if isinstance(value, bool) else str(value)
    for name, text in full.items():
        try:
            SETTINGS[name].parse(text)
        except ValueError as error:
            raise InvalidConfigError(f"bad value {text!r} for {name}: {error}") from None
    return full


def log_config(config: dict[str, str]) -> LogConfig:
    """The storage settings of a topic whose config passed validate_topic_config."""

    def value(name: str):
        return SETTINGS[name].parse(config[name])

    policies = value("cleanup.policy")
    return LogConfig(
        segment_bytes=value("segment.bytes"),
        segment_ms=value("segment.ms"),
        retention_ms=value("retention.ms"),
        retention_bytes=value("retention.bytes"),
        flush_messages=value("flush.messages"),
        flush_ms=value("flush.ms"),
        max_message_bytes=value("max.message.bytes"),
        index_interval_bytes=value("index.interval.bytes"),
        segment_index_bytes=value("segment.index.bytes"),
        compact="compact" in policies,
        delete="delete" in policies,
        delete_retention_ms=value("delete.retention.ms"),
        min_cleanable_dirty_ratio=value("min.cleanable.dirty.ratio"),
        min_compaction_lag_ms=value("min.compaction.lag.ms"),
    )
