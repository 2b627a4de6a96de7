"""The console producer and consumer behind ``rill produce`` and ``rill consume``.

The producer sends one record per input line and counts acknowledgements,
holding at most ``MAX_PENDING_RECORDS`` unresolved futures so that memory
stays bounded however long the input is. The consumer yields records as they
arrive and stops after a count or an idle time, when given.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

from rill.client.errors import RillError
from rill.client.types import Record, TopicPartition

MAX_PENDING_RECORDS = 10_000
RESULT_TIMEOUT_SECONDS = 60.0
POLL_TIMEOUT_SECONDS = 1.0


class PendingRecord(Protocol):
    """What ``Producer.send`` returns: ``result`` waits for the acknowledgement or raises the record's error."""

    def result(self, timeout: float | None = None) -> object: ...


@dataclass
class ProduceOutcome:
    """How many records were sent and acknowledged, and the first failure if any."""

    sent: int = 0
    acknowledged: int = 0
    first_error: BaseException | None = None

    def settle(self, future: PendingRecord) -> None:
        """Wait for one record's acknowledgement and count it as acknowledged or failed."""
        try:
            future.result(timeout=RESULT_TIMEOUT_SECONDS)
        except RillError as error:
            self.first_error = self.first_error or error
        else:
            self.acknowledged += 1


def acks_setting(text: str) -> int | str:
    """The producer's ``acks`` from its command-line spelling: 0 and 1 as numbers, "all" as is."""
    return text if text == "all" else int(text)


def produce_lines(bootstrap: str, topic: str, lines: Iterable[bytes], key: bytes | None, acks: str) -> ProduceOutcome:
    """Send each line as one record's value, flush, and count the acknowledgements."""
    from rill.client import (
        Producer,  # imported here: only commands that talk to brokers load the client
    )

    outcome = ProduceOutcome()
    pending: deque[PendingRecord] = deque()
    with Producer(bootstrap, acks=acks_setting(acks)) as producer:
        for line in lines:
            pending.append(producer.send(topic, value=line, key=key))
            outcome.sent += 1
            if len(pending) > MAX_PENDING_RECORDS:
                outcome.settle(pending.popleft())
        producer.flush()
        for future in pending:
            outcome.settle(future)
    return outcome


def strip_newline(line: bytes) -> bytes:
    """The line without its trailing newline (the last line of a file may have none)."""
    return line[:-1] if line.endswith(b"\n") else line


def consume_records(bootstrap: str, topic: str, from_beginning: bool, max_messages: int | None,
                    idle_timeout_ms: int | None, group: str | None = None) -> Iterator[Record]:
    """Records of the topic as they arrive; with ``group``, as a member of that consumer group.

    Stops after ``max_messages`` records or ``idle_timeout_ms`` without a new
    one; with neither, it runs until the caller stops (Ctrl-C), as a console
    consumer should. A group member commits what it has printed after each
    batch, so the group resumes after the last record printed.
    """
    from rill.client import (
        Consumer,  # imported here: only commands that talk to brokers load the client
    )

    remaining = math.inf if max_messages is None else max_messages
    idle_seconds = math.inf if idle_timeout_ms is None else idle_timeout_ms / 1000
    last_record_at = time.monotonic()
    reset = "earliest" if from_beginning else "latest"
    settings = {"group_id": group, "enable_auto_commit": False} if group else {}
    with Consumer(bootstrap, topics=[topic], auto_offset_reset=reset, **settings) as consumer:
        while remaining > 0:
            idle_left = idle_seconds - (time.monotonic() - last_record_at)
            if idle_left <= 0:
                return
            records = consumer.poll(timeout=min(POLL_TIMEOUT_SECONDS, idle_left))
            if records:
                last_record_at = time.monotonic()
            taken = records[:int(min(remaining, len(records)))]
            remaining -= len(taken)
            yield from taken
            if group and taken:
                consumer.commit(offsets={TopicPartition(r.topic, r.partition): r.offset + 1 for r in taken})


def format_record(record: Record, print_key: bool, print_offset: bool) -> str:
    """One output line: ``[partition:offset<TAB>][key<TAB>]value``, bytes decoded as UTF-8, None as "null"."""
    fields = [f"{record.partition}:{record.offset}"] if print_offset else []
    if print_key:
        fields.append(_text(record.key))
    fields.append(_text(record.value))
    return "\t".join(fields)


def _text(data: bytes | None) -> str:
    return "null" if data is None else data.decode("utf-8", errors="replace")
