"""Structured logs for the broker process: one record per line, as text for people or JSON for machines.

Every line carries the time (UTC, ISO-8601 with milliseconds), the node id,
the level, the logger and the message; an event adds fields that identify
what happened, so that a log pipeline can filter on them without parsing
the message. Text::

    2026-11-28T07:01:02.345Z node=1 INFO rill.node.replication.replica_manager: orders-0: became leader \
event=leader_change topic=orders partition=0 leader_epoch=3 isr=[1,2,3]

JSON (one object per line; the fields after the five fixed keys)::

    {"time": "2026-11-28T07:01:02.345Z", "level": "INFO", "node_id": 1,
     "logger": "rill.node.replication.replica_manager", "message": "orders-0: became leader",
     "event": "leader_change", "topic": "orders", "partition": 0, "leader_epoch": 3, "isr": [1, 2, 3]}

The text layout keeps "LEVEL logger: message" together as the broker wrote
it before, so a grep for "WARNING rill.node:" still finds its lines. A
traceback follows its line in text, and is the "exception" key in JSON.
Fields come from ``log_event`` (or ``extra={"fields": {...}}``); a field
never replaces one of the fixed keys.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import msgspec

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FIELDS_ATTRIBUTE = "fields"  # the LogRecord attribute holding an event's fields
_JSON = msgspec.json.Encoder(enc_hook=str)  # values JSON has no type for (a Path, an enum) as their str


def log_event(logger: logging.Logger, level: int, event: str, message: str, **fields: Any) -> None:
    """Log ``message`` as the event ``event`` with ``fields`` (JSON-encodable values, or anything with a str)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={FIELDS_ATTRIBUTE: {"event": event, **fields}})


def utc_time(created: float) -> str:
    """A record's time as ``2026-11-28T07:01:02.345Z``."""
    milliseconds = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{milliseconds:03d}Z"


class _NodeFormatter(logging.Formatter):
    """What both formats share: the node id, the message and the fields of a record."""

    def __init__(self, node_id: int):
        super().__init__()
        self.node_id = node_id

    @staticmethod
    def fields(record: logging.LogRecord) -> dict[str, Any]:
        return getattr(record, FIELDS_ATTRIBUTE, None) or {}

    def traceback(self, record: logging.LogRecord) -> str | None:
        """The record's exception and stack, formatted (None without either)."""
        parts = []
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts) or None


class TextFormatter(_NodeFormatter):
    """``<time> node=<id> <LEVEL> <logger>: <message> key=value ...``, then any traceback on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{utc_time(record.created)} node={self.node_id} {record.levelname} {record.name}: "
                f"{record.getMessage()}")
        fields = self.fields(record)
        if fields:
            line += " " + " ".join(f"{key}={text_value(value)}" for key, value in fields.items())
        traceback = self.traceback(record)
        return line if traceback is None else f"{line}\n{traceback}"


def text_value(value: Any) -> str:
    """A field value as the text format writes it: bare when that is unambiguous, else JSON-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ",".join(text_value(item) for item in value) + "]"
    text = str(value)
    if not text or any(character.isspace() or character in '"=' for character in text):
        return _JSON.encode(text).decode()
    return text


class JsonFormatter(_NodeFormatter):
    """One JSON object per record: time, level, node_id, logger, message, the event's fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {"time": utc_time(record.created), "level": record.levelname,
                                    "node_id": self.node_id, "logger": record.name,
                                    "message": record.getMessage()}
        for key, value in self.fields(record).items():
            document.setdefault(key, value)  # a field never replaces a fixed key
        traceback = self.traceback(record)
        if traceback is not None:
            document["exception"] = traceback
        return _JSON.encode(document).decode()



def configure_logging(node_id: int, level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every logger's records (Python warnings too) to ``stream`` (stderr) as ``log_format`` lines
    from ``level`` up; replaces the root logger's handlers. Level and format are checked by NodeConfig."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(node_id) if log_format == "json" else TextFormatter(node_id))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
