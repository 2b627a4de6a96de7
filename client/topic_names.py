"""Kafka's topic name rule: the one rule that the client and the brokers both apply.

A legal name is 1 to 249 ASCII letters, digits, ``.``, ``_`` and ``-``, and
not ``.`` or ``..`` (a partition folder is ``<topic>-<partition>``, so such
names would escape the data dir). Two names that differ only in ``.``
against ``_`` collide: metric names replace one with the other, so Kafka
refuses the second (and so does the controller here).

A wire module: brokers may import it (it needs only the standard library).
"""

from __future__ import annotations

import re
from typing import Iterable

TOPIC_NAME_CHARACTERS = "a-zA-Z0-9._-"  # a regex character class body; ranges of ASCII code points only
MAX_TOPIC_NAME_LENGTH = 249
_LEGAL = re.compile(f"[{TOPIC_NAME_CHARACTERS}]+")


def topic_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a topic name, or None if it is legal."""
    if not name:
        return "a topic name must not be empty"
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return f"topic name {name[:40]!r}... has {len(name)} characters, more than {MAX_TOPIC_NAME_LENGTH}"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if not _LEGAL.fullmatch(name):
        return f"topic name {name!r:.80} has a character other than ASCII letters, digits, '.', '_' and '-'"
    return None


def collision_key(name: str) -> str:
    """The name with every ``.`` read as ``_``: two names with the same key collide."""
    return name.replace(".", "_")


def colliding_name(name: str, existing: Iterable[str]) -> str | None:
    """An existing name other than ``name`` itself that collides with it, or None."""
    key = collision_key(name)
    return next((other for other in existing if other != name and collision_key(other) == key), None)
