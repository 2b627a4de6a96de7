"""The console's query parameters, checked: a bad one is a 400 whose JSON body says what is wrong.

Strict on purpose: an unknown or repeated parameter, a value that is not a
plain decimal integer (no spaces, exponents or non-ASCII digits), or one out
of range is refused rather than read as a default, so a typo never shows a
page the user did not ask for.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import NoReturn

from aiohttp import web
from multidict import MultiMapping
from rill.node.http.message_browser import DEFAULT_LIMIT, MAX_LIMIT, PageRequest
from rill.node.metadata.state import TopicState

PAGE_PARAMETERS = ("partition", "offset", "timestamp", "limit")
TEXT_SHOWN_MAX = 64  # of a bad value, in its error message
MAX_INT64 = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def fail(status: type[web.HTTPException], message: str) -> NoReturn:
    """Answer ``status`` with ``{"error": message}``."""
    raise status(text=json.dumps({"error": message}), content_type="application/json")


def page_request(topic: TopicState, query: MultiMapping[str]) -> PageRequest:
    """The message browser's query: partition (default 0), offset or timestamp (neither: newest), limit."""
    only_parameters(query, PAGE_PARAMETERS)
    partition = integer(query, "partition", 0)
    count = len(topic.partitions)
    if not 0 <= partition < count:
        fail(web.HTTPBadRequest, f"topic {topic.name!r} has partitions 0 to {count - 1}, not {partition}")
    offset = integer(query, "offset", None)
    timestamp_ms = _timestamp_ms(query.get("timestamp"))
    if offset is not None and timestamp_ms is not None:
        fail(web.HTTPBadRequest, "give offset or timestamp, not both")
    if offset is not None and offset < 0:
        fail(web.HTTPBadRequest, f"offset must be 0 or more, got {offset}")
    limit = integer(query, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        fail(web.HTTPBadRequest, f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    return PageRequest(topic.name, partition, offset, timestamp_ms, limit)


def only_parameters(query: MultiMapping[str], allowed: tuple[str, ...]) -> None:
    """400 for a parameter not in ``allowed`` or given twice: a typo must not silently mean the default."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        fail(web.HTTPBadRequest, f"unknown query parameter {', '.join(map(repr, unknown))}: use "
                                 + ", ".join(allowed))
    repeated = sorted(name for name in set(query) if len(query.getall(name)) > 1)
    if repeated:
        fail(web.HTTPBadRequest, f"query parameter {', '.join(map(repr, repeated))} given more than once")


def integer(query: MultiMapping[str], name: str, default: int | None) -> int | None:
    """The parameter as an integer, ``default`` when it is absent."""
    text = query.get(name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):
        fail(web.HTTPBadRequest, f"{name} must be an integer, got {text[:TEXT_SHOWN_MAX]!r}")
    return int(text)


def _timestamp_ms(text: str | None) -> int | None:
    """Milliseconds since the epoch, given as such or as an ISO-8601 date and time (UTC unless it says)."""
    if text is None:
        return None
    if _INTEGER.fullmatch(text):
        value = int(text)
    else:
        try:
            if len(text) > TEXT_SHOWN_MAX:
                raise ValueError(text)
            moment = datetime.fromisoformat(text)
        except ValueError:
            fail(web.HTTPBadRequest, f"timestamp must be milliseconds since the epoch or an ISO-8601 date and "
                                     f"time, got {text[:TEXT_SHOWN_MAX]!r}")
        value = int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
    if not 0 <= value <= MAX_INT64:
        fail(web.HTTPBadRequest, f"timestamp must be from 0 to {MAX_INT64} ms, got {value}")
    return value
