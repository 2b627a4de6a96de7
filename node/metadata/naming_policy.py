"""The cluster's optional topic naming policy: a regular expression every new topic's name must match.

Kafka checks only that a name is legal (client/topic_names.py); teams add a
convention such as ``<domain>.<entity>.<event>`` (``orders.order.created``)
and enforce it by review. Rill can enforce it at creation: the node config's
``topic_naming_policy`` is a regular expression (RE2 syntax, matched against
the whole name). Two kinds of name are let through without matching:

- internal topics (``__consumer_offsets``), which the brokers create;
- dead-letter topics, ``<name>.dlq`` where ``<name>`` itself follows the
  policy, so that the dead-letter convention works under any policy.
"""

from __future__ import annotations

import re2
from rill.client import protocol
from rill.client.errors import InvalidConfigError, InvalidTopicError

DEAD_LETTER_SUFFIX = ".dlq"


class NamingPolicy:
    """A compiled ``topic_naming_policy``; an empty pattern allows every legal name."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self._regex = compile_policy(pattern) if pattern else None

    def check(self, name: str) -> None:
        """InvalidTopicError, naming the policy, unless ``name`` follows it (or is exempt, see the module)."""
        if self._regex is None or name in protocol.INTERNAL_TOPICS:
            return
        if self._follows(name):
            return
        raise InvalidTopicError(
            f"topic {name!r} does not follow this cluster's naming policy: a name must match "
            f"'{self.pattern}' (node config topic_naming_policy), or be <such a name>{DEAD_LETTER_SUFFIX}")

    def _follows(self, name: str) -> bool:
        if self._regex.fullmatch(name) is not None:
            return True
        base = name.removesuffix(DEAD_LETTER_SUFFIX)
        return base != name and self._regex.fullmatch(base) is not None


def compile_policy(pattern: str):
    """The RE2 regex of a policy; InvalidConfigError if it does not compile (a broker refuses to start)."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
        raise InvalidConfigError(f"topic_naming_policy {pattern!r} is not a valid regular expression: {reason}") \
            from None
