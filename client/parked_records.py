"""The records of one partition that ``run_handler`` has taken and not resolved yet, kept in key order.

Invariants (client/handler.py relies on them):

- ``open`` holds every record taken and not yet resolved (handled, or its
  dead-letter copy acknowledged), by offset; the partition's offset that
  is safe to commit (``low_mark``) is the lowest of them, else the offset
  after the last record taken. A commit never passes an unresolved record.
- A key is *busy* while a job holding it (a record, or a batch, that
  failed once) is parked for a retry or waits for its dead-letter write.
  Later records of a busy key wait behind it in offset order and become
  ready again only when that job is finished. Records without a key are
  each their own key: they never wait and never make others wait.
- At most one job holds a key, and a record runs only while its key is
  free, so records of one key are handled in offset order.

Pure bookkeeping, no I/O; not thread-safe (owned by run_handler's thread).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable

from rill.client.types import Record

_job_numbers = itertools.count()


class Job:
    """Records handled together (one, or a batch) and their attempts so far; ``due`` is its next retry."""

    __slots__ = ("attempts", "due", "error", "number", "records")

    def __init__(self, records: list[Record]):
        self.records = records
        self.attempts = 0
        self.error: BaseException | None = None
        self.due = 0.0
        self.number = next(_job_numbers)

    def __lt__(self, other: Job) -> bool:  # heap order: by due time, then by age
        return (self.due, self.number) < (other.due, other.number)


class PartitionWork:
    """One partition's taken records: unresolved ones, ready ones, busy keys with their waiting records, retries."""

    def __init__(self, next_offset: int):
        self.open: OrderedDict[int, Record] = OrderedDict()
        self.next_offset = next_offset  # the offset after the last record taken
        self.committed = next_offset  # what this run committed last (where it started, at first)
        self.ready: deque[Record] = deque()
        self._busy: dict[Hashable, tuple[Job, deque[Record]]] = {}
        self._parked: list[Job] = []
        self.already_dead_lettered: set[int] | None = None  # None until the dead-letter topic was read back
        self.dead_letter_high = -1  # the highest offset of this partition known to be dead-lettered

    @property
    def low_mark(self) -> int:
        """The offset to commit: the lowest unresolved record's, else the one after the last record taken."""
        return next(iter(self.open), self.next_offset)

    @property
    def unresolved(self) -> int:
        return len(self.open)

    def admit(self, record: Record, ready: bool = True) -> None:
        """Take a new record (offsets only grow); a ready one runs when its key is free."""
        self.open[record.offset] = record
        self.next_offset = record.offset + 1
        if ready:
            self.ready.append(record)

    def take_ready(self, limit: int) -> list[Record]:
        """Up to ``limit`` ready records whose keys are free, in offset order; those of busy keys go to wait."""
        taken: list[Record] = []
        while self.ready and len(taken) < limit:
            record = self.ready.popleft()
            held = self._busy.get(key_of(record))
            if held is None:
                taken.append(record)
            else:
                held[1].append(record)
        return taken

    def hold(self, job: Job) -> None:
        """Make the job's keys busy (it failed once): later records of those keys wait until it is released."""
        for record in job.records:
            key = key_of(record)
            if key is not None and key not in self._busy:
                self._busy[key] = (job, deque())

    def release(self, job: Job) -> None:
        """The job is finished: its keys are free again and the records waiting on them become ready."""
        for record in job.records:
            key = key_of(record)
            held = self._busy.get(key)
            if held is not None and held[0] is job:
                del self._busy[key]
                self.ready.extend(held[1])

    def resolve(self, records: list[Record]) -> None:
        """These records are handled or safely dead-lettered: they no longer hold the commit back."""
        for record in records:
            self.open.pop(record.offset, None)

    def park(self, job: Job, due: float) -> None:
        job.due = due
        heapq.heappush(self._parked, job)

    def due_jobs(self, now: float) -> list[Job]:
        """The parked jobs whose retry is due, oldest first."""
        due: list[Job] = []
        while self._parked and self._parked[0].due <= now:
            due.append(heapq.heappop(self._parked))
        return due

    def next_due(self) -> float | None:
        """When the next parked job is due (monotonic seconds), or None."""
        return self._parked[0].due if self._parked else None

    def skip_if_dead_lettered(self, offset: int) -> bool:
        """Whether a previous owner already dead-lettered this offset (it is then not handled again)."""
        if self.already_dead_lettered and offset in self.already_dead_lettered:
            self.already_dead_lettered.discard(offset)
            return True
        return False


def key_of(record: Record) -> Hashable | None:
    """What orders a record: its key (a deserialized key that cannot be hashed by its repr); None: keyless."""
    key = record.key
    if key is None:
        return None
    try:
        hash(key)
    except TypeError:
        return ("unhashable", repr(key))
    return key
