"""How the console shows a record's key, value or header: JSON pretty-printed, text as text, anything else as hex.

A preview holds at most ``limit`` characters of text (hex: ``limit // 2``
bytes, two characters each) and always the value's full size, so a huge or
binary value renders small and the reader knows what was left out. Only
values up to JSON_PARSE_BYTES_MAX are parsed as JSON; a larger one is shown
as the text it starts with.
"""

from __future__ import annotations

import json
import re
from typing import Any

PREVIEW_CHARS = 4096  # keys and values
HEADER_PREVIEW_CHARS = 256
JSON_PARSE_BYTES_MAX = 64 * 1024
UTF8_CHAR_BYTES_MAX = 4
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not text: C0 controls but tab, newline, return


def preview(data: bytes | None, limit: int = PREVIEW_CHARS) -> dict[str, Any] | None:
    """``{"encoding": "json" | "text" | "hex", "data": str, "size": bytes, "truncated": bool}``; None for None."""
    if data is None:
        return None
    size = len(data)
    pretty = _pretty_json(data) if size <= JSON_PARSE_BYTES_MAX else None
    if pretty is not None:
        return _clipped("json", pretty, size, limit, len(pretty) > limit)
    text = _text_prefix(data, limit)
    if text is not None:
        return _clipped("text", text, size, limit, len(text) > limit or len(text.encode()) < size)
    shown = data[:limit // 2]
    return _clipped("hex", shown.hex(), size, limit, len(shown) < size)


def _clipped(encoding: str, text: str, size: int, limit: int, truncated: bool) -> dict[str, Any]:
    return {"encoding": encoding, "data": text[:limit], "size": size, "truncated": truncated}


def _pretty_json(data: bytes) -> str | None:
    """The value indented, if it is a JSON document in UTF-8 (a bare string stays text)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(document, str):
        return None
    try:
        return json.dumps(document, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None


def _text_prefix(data: bytes, limit: int) -> str | None:
    """The first ``limit``-odd characters if the value is UTF-8 text without control characters, else None.

    Decodes a bounded prefix; a character cut at its end is dropped, not taken for binary.
    """
    prefix = data[:limit * UTF8_CHAR_BYTES_MAX]
    try:
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as error:
        cut_at_end = len(prefix) < len(data) and error.start >= len(prefix) - UTF8_CHAR_BYTES_MAX + 1
        if not cut_at_end:
            return None
        text = prefix[:error.start].decode("utf-8", errors="strict")
    return None if _CONTROL.search(text) else text
