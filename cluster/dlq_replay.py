"""Replaying a dead-letter topic: its copies published again to their source topic (or another), once each.

Each replayed record keeps the copy's key and value and the original
headers (every ``dlq.*`` header dropped) plus ``dlq.replayed: 1``; it goes
to ``--to`` or to the topic its ``dlq.topic`` names, partitioned by key
like any new record, timestamped now. If it fails again, run_handler
dead-letters it afresh.

Progress is a consumer group's committed offsets on the dead-letter topic,
committed per partition once every record replayed from it is
acknowledged (a failure leaves that partition uncommitted: a second run
may then repeat part of it, never skip):

- ``rill.dlq.replay.<dlq topic>`` for a replay of everything,
- ``rill.dlq.replay.<dlq topic>.error.<TYPE>`` for ``--filter-error TYPE``.

A copy counts as replayed when the group of "everything" or the group of
its own error type has passed it, so a filtered replay followed by a full
one (or the other way round) publishes no record twice. Run one replay of
a topic at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from rill.client.dead_letter import ERROR_TYPE, HEADER_PREFIX, TOPIC
from rill.client.errors import GroupIdNotFoundError
from rill.client.partition_reader import PartitionReader
from rill.client.types import Record, TopicPartition

GROUP_PREFIX = "rill.dlq.replay."
REPLAYED = "dlq.replayed"


@dataclass
class ReplayOutcome:
    replayed: int = 0
    skipped: int = 0  # of another error type, or replayed before by the other group
    partitions: int = 0


def replay_group(dead_letter_topic: str, error_type: str | None = None) -> str:
    """The consumer group keeping a replay's progress."""
    group = GROUP_PREFIX + dead_letter_topic
    return group if error_type is None else f"{group}.error.{error_type}"


def replayed_headers(copy: Record) -> dict[str, bytes]:
    headers = {name: value for name, value in copy.headers.items() if not name.startswith(HEADER_PREFIX)}
    headers[REPLAYED] = b"1"
    return headers


class Replay:
    """One replay run of one dead-letter topic."""

    def __init__(self, admin, bootstrap: str, dead_letter_topic: str, to_topic: str | None, error_type: str | None):
        self._admin = admin
        self._bootstrap = bootstrap
        self._topic = dead_letter_topic
        self._to_topic = to_topic
        self._error_type = error_type
        self._group = replay_group(dead_letter_topic, error_type)
        self.outcome = ReplayOutcome()

    def run(self) -> ReplayOutcome:
        from rill.client import Consumer, Producer

        partitions = [TopicPartition(self._topic, info.partition)
                      for info in self._admin.describe_topic(self._topic).partitions]
        self.outcome.partitions = len(partitions)
        reader = PartitionReader(self._bootstrap)
        try:
            with Consumer(self._bootstrap, group_id=self._group, enable_auto_commit=False) as progress, \
                    Producer(self._bootstrap, acks="all") as producer:
                own = progress.committed(partitions)
                passed_by = {}
                for group in self._other_groups():
                    passed_by[group] = self._committed(group)
                for tp in partitions:
                    self._replay_partition(tp, own[tp], passed_by, reader, producer, progress)
        finally:
            reader.close()
        return self.outcome

    def _other_groups(self) -> list[str]:
        """The groups whose progress also counts: the full replay's and, for a full replay, every type's."""
        if self._error_type is not None:
            return [replay_group(self._topic)]
        prefix = replay_group(self._topic, "")
        return [group.group_id for group in self._admin.list_groups() if group.group_id.startswith(prefix)]

    def _committed(self, group: str) -> dict[int, int]:
        try:
            description = self._admin.describe_group(group)
        except GroupIdNotFoundError:
            return {}
        return {lag.partition: lag.committed_offset for lag in description.partitions
                if lag.topic == self._topic and lag.committed_offset is not None}

    def _replayed_before(self, copy: Record, error_type: str, passed_by: dict[str, dict[int, int]]) -> bool:
        group = replay_group(self._topic) if self._error_type is not None else replay_group(self._topic, error_type)
        return copy.offset < passed_by.get(group, {}).get(copy.partition, 0)

    def _replay_partition(self, tp: TopicPartition, committed: int | None, passed_by: dict[str, dict[int, int]],
                          reader: PartitionReader, producer, progress) -> None:
        first, end = reader.bounds(tp)
        start = first if committed is None else max(committed, first)
        futures = []
        for copy in reader.read(tp, start, end):
            error_type = copy.headers.get(ERROR_TYPE, b"").decode("utf-8", errors="replace")
            target = self._to_topic or copy.headers.get(TOPIC, b"").decode("utf-8", errors="replace")
            if (self._error_type is not None and error_type != self._error_type) or not target \
                    or self._replayed_before(copy, error_type, passed_by):
                self.outcome.skipped += 1
                continue
            futures.append(producer.send(target, copy.value, key=copy.key, headers=replayed_headers(copy)))
        producer.flush()
        for future in futures:
            future.result()
        self.outcome.replayed += len(futures)
        if end > start:
            progress.commit({tp: end})
