"""Dead-letter topics: where ``run_handler`` puts a record it gave up on, and how it avoids doing so twice.

A record of source partition p goes to partition ``p % n`` of the
dead-letter topic (``<topic>.dlq`` unless named), created on first use
with the source topic's partition count, replication factor and
min.insync.replicas (so normally partition p to partition p). The copy
keeps the original key, value and headers (any ``dlq.*`` ones dropped),
is timestamped when written (so retention counts from then) and adds,
values as bytes (numbers in ASCII decimal, text in UTF-8):

  dlq.topic, dlq.partition, dlq.offset   where the record came from
  dlq.group                              the consumer group that gave up on it
  dlq.error.type, dlq.error              the exception's class name and message (cut at 2,000 characters)
  dlq.attempts                           how many times the handler ran on it (0: it could not be deserialized)
  dlq.time                               when it was dead-lettered, ms since the epoch (also the record's timestamp)
  dlq.offset.max                         the highest offset of that source partition dead-lettered so far, as its
                                         writer knew it (this one included): lets a later owner stop reading back

Exactly once across crashes (``already_dead_lettered``): a member may die
after a copy was acknowledged and before the source offset was committed.
The next owner of the partition, before handling its first record (offset
c), reads the dead-letter partition backwards from its end and collects
the offsets >= c of that source partition dead-lettered by its own group
(groups share ``<topic>.dlq``: another group's copy says nothing of this
group's work), stopping at the first copy
whose ``dlq.offset.max`` is below c: every copy written before it names a
lower offset (its writer knew all of them, and knew every copy its own
predecessors had left above where it started). Those offsets count as
dead-lettered and are not handled again. The read is bounded by
``SCAN_RECORDS_MAX``; past it a warning is logged (a copy may then repeat,
nothing is lost). A member that stalls past its session timeout and wakes
after its partitions moved can still write a second copy, as any Kafka
consumer without transactions can repeat work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from rill.client.errors import InvalidTopicError, TopicAlreadyExistsError, UnknownTopicError
from rill.client.partition_reader import PartitionReader
from rill.client.topic_names import topic_name_problem
from rill.client.types import Record, TopicPartition

log = logging.getLogger(__name__)

SUFFIX = ".dlq"
HEADER_PREFIX = "dlq."
TOPIC, PARTITION, OFFSET, OFFSET_MAX = "dlq.topic", "dlq.partition", "dlq.offset", "dlq.offset.max"
GROUP = "dlq.group"
ERROR, ERROR_TYPE, ATTEMPTS, TIME = "dlq.error", "dlq.error.type", "dlq.attempts", "dlq.time"
ERROR_MESSAGE_MAX = 2_000
SCAN_WINDOW_FIRST = 16  # records read per step backwards, doubling up to SCAN_WINDOW_MAX
SCAN_WINDOW_MAX = 4_096
SCAN_RECORDS_MAX = 200_000
COPIED_CONFIG = ("min.insync.replicas",)


def dead_letter_topic_name(source_topic: str, dead_letter_topic: str | None) -> str:
    """The dead-letter topic of ``source_topic``; InvalidTopicError if that is not a legal name."""
    name = dead_letter_topic or source_topic + SUFFIX
    problem = topic_name_problem(name)
    if problem is not None:
        raise InvalidTopicError(f"cannot dead-letter records of {source_topic!r:.80} to {name[:80]!r}: {problem}; "
                                "pass dead_letter_topic= a shorter name")
    return name


def dead_letter_headers(record: Record, original_headers: Mapping[str, bytes], group: str, error: BaseException,
                        attempts: int, offset_max: int, now_ms: int) -> dict[str, bytes]:
    """The original headers without ``dlq.*`` ones, plus the dead-letter headers describing the failure."""
    headers = {name: value for name, value in original_headers.items() if not name.startswith(HEADER_PREFIX)}
    headers.update({
        TOPIC: record.topic.encode(), PARTITION: b"%d" % record.partition, OFFSET: b"%d" % record.offset,
        GROUP: group.encode(),
        ERROR_TYPE: type(error).__name__.encode(),
        ERROR: str(error)[:ERROR_MESSAGE_MAX].encode("utf-8", errors="replace"),
        ATTEMPTS: b"%d" % attempts, TIME: b"%d" % now_ms, OFFSET_MAX: b"%d" % max(offset_max, record.offset),
    })
    return headers


def source_of(record: Record) -> tuple[TopicPartition, int, int, str | None] | None:
    """(source partition, source offset, dlq.offset.max, dlq.group) of a dead-letter copy; None if it is not one."""
    headers = record.headers
    try:
        offset = int(headers[OFFSET])
        source = TopicPartition(headers[TOPIC].decode(), int(headers[PARTITION]))
        group = headers[GROUP].decode() if GROUP in headers else None
        return source, offset, int(headers.get(OFFSET_MAX, headers[OFFSET])), group
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


class DeadLetterWriter:
    """Writes dead-letter copies through a producer (acks=all) and reads dead-letter partitions back."""

    def __init__(self, bootstrap: str, group: str, dead_letter_topic: str | None, producer: Any = None,
                 reader: PartitionReader | None = None):
        self._bootstrap = bootstrap
        self._group = group
        self._dead_letter_topic = dead_letter_topic
        self._producer = producer
        self._own_producer = producer is None
        self._reader = reader or PartitionReader(bootstrap)
        self._admin = None
        self._partition_counts: dict[str, int] = {}  # of dead-letter topics known to exist

    def topic_for(self, source_topic: str) -> str:
        return dead_letter_topic_name(source_topic, self._dead_letter_topic)

    # ---- writing ----------------------------------------------------------------------

    def send(self, record: Record, stored: Record, error: BaseException, attempts: int, offset_max: int):
        """Queue the dead-letter copy of ``record`` (``stored``: the same record as bytes); returns its future."""
        topic = self.topic_for(record.topic)
        count = self._partition_count(topic) or self._create(topic, record.topic)
        now_ms = int(time.time() * 1000)
        headers = dead_letter_headers(record, stored.headers, self._group, error, attempts, offset_max, now_ms)
        return self._producer_or_new().send(topic, stored.value, key=stored.key, headers=headers,
                                            partition=record.partition % count, timestamp_ms=now_ms)

    def _producer_or_new(self):
        if self._producer is None:
            from rill.client.producer import Producer

            self._producer = Producer(self._bootstrap, acks="all", linger_ms=0, client_id="rill-dead-letter")
        return self._producer

    def _admin_or_new(self):
        if self._admin is None:
            from rill.client.admin import Admin

            self._admin = Admin(self._bootstrap, client_id="rill-dead-letter")
        return self._admin

    def _partition_count(self, topic: str) -> int | None:
        if topic not in self._partition_counts:
            try:
                self._partition_counts[topic] = len(self._admin_or_new().describe_topic(topic).partitions)
            except UnknownTopicError:
                return None  # not cached: it may be created by another member any time
        return self._partition_counts[topic]

    def _create(self, topic: str, source_topic: str) -> int:
        """Create the dead-letter topic as durable as its source (partitions, replication factor,
        min.insync.replicas); another member may create it first."""
        source = self._admin_or_new().describe_topic(source_topic)
        replication_factor = len(source.partitions[0].replicas)
        config = {name: source.config[name] for name in COPIED_CONFIG if name in source.config}
        try:
            self._admin_or_new().create_topic(topic, partitions=len(source.partitions),
                                              replication_factor=replication_factor, config=config)
            log.info("created dead-letter topic %s (%d partitions, replication factor %d)", topic,
                     len(source.partitions), replication_factor)
        except TopicAlreadyExistsError:
            pass
        count = self._partition_count(topic)
        if count is None:
            raise UnknownTopicError(f"dead-letter topic {topic!r} was created but is not in the metadata yet")
        return count

    # ---- reading back -------------------------------------------------------------------

    def already_dead_lettered(self, source: TopicPartition, start: int) -> set[int]:
        """Offsets >= ``start`` of ``source`` that already have a dead-letter copy (see the module docstring)."""
        topic = self.topic_for(source.topic)
        count = self._partition_count(topic)
        if count is None:
            return set()
        partition = TopicPartition(topic, source.partition % count)
        first, end = self._reader.bounds(partition)
        found: set[int] = set()
        window, scanned = SCAN_WINDOW_FIRST, 0
        while end > first:
            if scanned >= SCAN_RECORDS_MAX:
                log.warning("read %d records of %s-%d back without finding where %s-%d was committed (%d); a "
                            "record may be dead-lettered twice", scanned, topic, partition.partition, source.topic,
                            source.partition, start)
                break
            begin = max(first, end - window)
            copies = list(self._reader.read(partition, begin, end))
            scanned += len(copies)
            if self._collect(reversed(copies), source, self._group, start, found):
                break
            end, window = begin, min(window * 2, SCAN_WINDOW_MAX)
        return found

    @staticmethod
    def _collect(copies, source: TopicPartition, group: str, start: int, found: set[int]) -> bool:
        """Add the offsets >= start of ``group``'s copies of ``source`` to ``found``; True at a copy that ends
        the search."""
        for copy in copies:
            described = source_of(copy)
            if described is None or described[0] != source or described[3] != group:
                continue
            _, offset, offset_max, _ = described
            if offset_max < start:
                return True
            if offset >= start:
                found.add(offset)
        return False

    def stored(self, partition: TopicPartition, offsets: list[int]) -> dict[int, Record]:
        """The records at these offsets as stored (bytes), read in one pass; missing ones (deleted) are absent."""
        wanted = set(offsets)
        return {record.offset: record for record in self._reader.read(partition, min(offsets), max(offsets) + 1)
                if record.offset in wanted}

    def close(self) -> None:
        """Close what this writer opened (a producer passed in stays open: its owner closes it)."""
        if self._own_producer and self._producer is not None:
            self._producer.close()
        if self._admin is not None:
            self._admin.close()
        self._reader.close()
