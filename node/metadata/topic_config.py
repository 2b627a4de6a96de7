"""Topic settings: Kafka's names, their defaults, their validation, and what a broker applies of them.

A topic's config travels and is stored as ``dict[str, str]`` (as in Kafka).
:func:`topic_settings` turns a stored config into what a broker applies
(the storage layer's :class:`LogConfig`, ``min.insync.replicas``), and
:func:`validate_topic_config` is that same code run before a config is
committed, so that a config the controller accepts is one every broker can
apply: one rule, not two that may drift apart.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from rill.client.errors import InvalidConfigError
from rill.client.schema_registry import subject_problem
from rill.node.log.config import INDEX_ENTRY_BYTES_MAX, MAXIMUM_SEGMENT_BYTES, MINIMUM_SEGMENT_BYTES, LogConfig

INT32_MAX = 2**31 - 1  # Kafka's "int" settings
INT64_MAX = 2**63 - 1  # Kafka's "long" settings
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also take other scripts' digits


@dataclass(frozen=True)
class Setting:
    """One topic setting: its default (as a string) and how to parse and check a value."""

    default: str
    parse: Callable[[str], object]
    doc: str


@dataclass(frozen=True)
class TopicSettings:
    """What a broker applies of a topic's config: its logs' settings and its acks=all rule."""

    log: LogConfig
    min_insync_replicas: int


def _integer(minimum: int, maximum: int = INT64_MAX) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise ValueError("must be an integer")
        value = int(text)
        if not minimum <= value <= maximum:
            raise ValueError(f"must be from {minimum} to {maximum}")
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


def _schema_subject(text: str) -> str:
    """No subject (the empty string) or a subject name (client/schema_registry.py subject_problem)."""
    problem = subject_problem(text) if text else None
    if problem is not None:
        raise ValueError(problem)
    return text


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
    "segment.bytes": Setting("1073741824", _integer(MINIMUM_SEGMENT_BYTES, MAXIMUM_SEGMENT_BYTES),
                             "roll a new segment at this size"),
    "segment.ms": Setting("604800000", _integer(1), "roll a new segment after this long"),
    "segment.index.bytes": Setting("10485760", _integer(INDEX_ENTRY_BYTES_MAX, INT32_MAX),
                                   "offset index size at which a segment rolls"),
    "index.interval.bytes": Setting("4096", _integer(0, INT32_MAX), "bytes of log between two offset index entries"),
    "max.message.bytes": Setting("1048588", _integer(0, INT32_MAX), "largest record batch the topic accepts"),
    "flush.messages": Setting("-1", _optional_positive, "fsync after this many records; -1: leave it to the OS"),
    "flush.ms": Setting("-1", _optional_positive, "fsync after this long; -1: leave it to the OS"),
    "min.insync.replicas": Setting("1", _integer(1, INT32_MAX), "replicas that must have a record for acks=all"),
    "unclean.leader.election.enable": Setting("false", _boolean, "allow an out-of-sync replica to lead"),
    "schema.subject": Setting("", _schema_subject, "the schema registry subject of the topic's values"),
    "schema.validation": Setting("false", _boolean, "refuse batches whose records do not carry the id of a "
                                 "registered version of schema.subject (header schema.id)"),
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to a misspelt ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def setting_text(value: object) -> str:
    """A setting's value as stored: a string; booleans as Kafka writes them ("true", "false")."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def validate_topic_config(config: Mapping[str, object], defaults: Mapping[str, object] | None = None
                          ) -> dict[str, str]:
    """The full config of a new topic: every setting, as strings, checked by building what brokers apply.

    ``defaults`` are the node's ``topic_defaults``, under the topic's own
    settings. Raises InvalidConfigError naming the setting and what is wrong.
    """
    full = {name: setting.default for name, setting in SETTINGS.items()}
    for source, values in (("topic default", defaults or {}), ("topic config", config)):
        for name, value in values.items():
            if name not in SETTINGS:
                raise InvalidConfigError(f"unknown {source} {name!r}{did_you_mean(name, SETTINGS)}")
            full[name] = setting_text(value)
    for name in SETTINGS:
        _parse(full, name)  # settings that nothing below builds (unclean.leader.election.enable) are checked too
    if _parse(full, "schema.validation") and not full["schema.subject"]:
        raise InvalidConfigError("schema.validation=true needs schema.subject: the subject whose registered "
                                 "schema ids the topic's records must carry")
    topic_settings(full)
    return full


def topic_settings(config: Mapping[str, str]) -> TopicSettings:
    """What a broker applies of a stored topic config. Raises InvalidConfigError if it cannot be applied.

    A setting missing from ``config`` (stored before the setting existed)
    takes its default; names no longer known are ignored.
    """
    policies = _parse(config, "cleanup.policy")
    try:
        log = LogConfig(
            segment_bytes=_parse(config, "segment.bytes"),
            segment_ms=_parse(config, "segment.ms"),
            retention_ms=_parse(config, "retention.ms"),
            retention_bytes=_parse(config, "retention.bytes"),
            flush_messages=_parse(config, "flush.messages"),
            flush_ms=_parse(config, "flush.ms"),
            max_message_bytes=_parse(config, "max.message.bytes"),
            index_interval_bytes=_parse(config, "index.interval.bytes"),
            segment_index_bytes=_parse(config, "segment.index.bytes"),
            compact="compact" in policies,
            delete="delete" in policies,
            delete_retention_ms=_parse(config, "delete.retention.ms"),
            min_cleanable_dirty_ratio=_parse(config, "min.cleanable.dirty.ratio"),
            min_compaction_lag_ms=_parse(config, "min.compaction.lag.ms"),
        )
    except InvalidConfigError as error:
        raise InvalidConfigError(f"the topic config cannot be applied: {error}") from None
    return TopicSettings(log, _parse(config, "min.insync.replicas"))


def log_config(config: Mapping[str, str]) -> LogConfig:
    """The storage settings of a stored topic config (see topic_settings)."""
    return topic_settings(config).log


def _parse(config: Mapping[str, str], name: str):
    text = config.get(name, SETTINGS[name].default)
    try:
        return SETTINGS[name].parse(text)
    except ValueError as error:
        raise InvalidConfigError(f"bad value {text!r:.80} for {name}: {error}") from None
