"""Consumer group benchmarks: a group of three consumer processes, and how long rebalances take.

- throughput: ``records`` records wait in a 6-partition topic (RF=3); three
  member processes join with every partition paused, and once the group is
  stable they all resume; aggregate records/s from the go signal to the
  last record.
- join: two members read a stream sent at ``rate`` records/s; a third
  joins. Reported: the time until the newcomer owns its two partitions, and
  the longest gap between two polls that returned records at an old member
  while the newcomer joined (their pause), next to the same gap measured
  over as long a time before the join (the stream's own gaps).
- crash: kill -9 of one of three members; the time until the survivors own
  all six partitions, against session timeout + 1 s.

Members run in child processes (multiprocessing "spawn") and report events
over a queue: ("assigned", member, time, partition count), ("records",
member, time, count, seconds since its previous records). Every wait is bounded.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from dataclasses import dataclass

from rill.client import Admin, Consumer, Producer

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
MEMBER_MAX_SECONDS = 300


@dataclass
class GroupResults:
    records_per_s: float
    join_s: float
    join_pause_ms: float
    steady_gap_ms: float
    crash_s: float


def member(bootstrap: str, topic: str, group: str, name: int, events, go, stop) -> None:
    """Child process: one group member; paused until ``go`` is set, reports what it gets."""
    consumer = Consumer(bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                        max_poll_records=10_000, session_timeout_ms=SESSION_TIMEOUT_MS,
                        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS, enable_auto_commit=False,
                        on_assign=lambda c, _: events.put(("assigned", name, time.time(), len(c.assignment()))),
                        on_revoke=lambda c, p: events.put(("assigned", name, time.time(),
                                                           len(c.assignment()) - len(p))))
    last_records = time.time()
    deadline = time.monotonic() + MEMBER_MAX_SECONDS
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if not go.is_set():
                consumer.pause(consumer.assignment())
            elif consumer.assignment():
                consumer.resume(consumer.assignment())
            records = consumer.poll(0.05)
            if records:
                now = time.time()
                events.put(("records", name, now, len(records), now - last_records))
                last_records = now
    finally:
        consumer.close()


class Members:
    """Member processes and their event queue."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        self._context = multiprocessing.get_context("spawn")
        self.events = self._context.Queue()
        self.go, self.stop = self._context.Event(), self._context.Event()
        self._args = (bootstrap, topic, group)
        self.processes: list = []
        self.owned: dict[int, int] = {}
        self.records = 0
        self.last_record = 0.0
        self.max_gap: dict[int, float] = {}

    def start(self) -> int:
        name = len(self.processes)
        process = self._context.Process(target=member, args=(*self._args, name, self.events, self.go, self.stop))
        process.start()
        self.processes.append(process)
        return name

    def kill(self, name: int) -> None:
        os.kill(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].join(timeout=10)
        self.owned.pop(name, None)

    def drain(self, timeout_s: float = 0.1) -> None:
        try:
            event = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return
        for _ in range(100_000):
            self._take(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _take(self, event: tuple) -> None:
        if event[0] == "assigned":
            _, name, _, count = event
            if name < len(self.processes) and self.processes[name].is_alive():
                self.owned[name] = count
        else:
            _, name, at, count, gap = event
            self.records += count
            self.last_record = max(self.last_record, at)
            self.max_gap[name] = max(self.max_gap.get(name, 0.0), gap)

    def wait_for(self, condition, timeout_s: float, what: str) -> float:
        """Drain events until ``condition()``; returns the time it held. Raises after the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.drain()
            if condition():
                return time.time()
        raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")

    def close(self) -> None:
        self.stop.set()
        for process in self.processes:
            process.join(timeout=20)
            if process.is_alive():
                process.kill()


def bench_group(bootstrap: str, records: int, values: list[bytes], rate: int) -> GroupResults:
    with Admin(bootstrap) as admin:
        for topic in ("bench-group", "bench-rebalance"):
            admin.create_topic(topic, partitions=PARTITIONS, replication_factor=3)
    _produce(bootstrap, "bench-group", values, records)
    throughput = _throughput(bootstrap, records)
    join_s, pause_s, steady_s, crash_s = _rebalances(bootstrap, values, rate)
    return GroupResults(throughput, join_s, pause_s * 1000, steady_s * 1000, crash_s)


def _produce(bootstrap: str, topic: str, values: list[bytes], count: int) -> None:
    with Producer(bootstrap, acks=1) as producer:
        for number in range(count):
            producer.send(topic, values[number % len(values)])
        producer.flush()


def _throughput(bootstrap: str, records: int) -> float:
    members = Members(bootstrap, "bench-group", "bench-throughput")
    try:
        for _ in range(3):
            members.start()
        members.wait_for(lambda: sorted(members.owned.values()) == [2, 2, 2], 120, "a stable group of three")
        started = time.time()
        members.go.set()
        members.wait_for(lambda: members.records >= records, 300, f"the group to read {records:,} records")
        return records / (members.last_record - started)
    finally:
        members.close()


def _rebalances(bootstrap: str, values: list[bytes], rate: int) -> tuple[float, float, float, float]:
    """Seconds: join time, the old members' longest pause during the join and before it, crash handling."""
    members = Members(bootstrap, "bench-rebalance", "bench-rebalance")
    members.go.set()
    with Producer(bootstrap, acks=1, linger_ms=1) as producer:
        try:
            for _ in range(2):
                members.start()
            settled = _stream(producer, values, rate, members, lambda: sorted(members.owned.values()) == [3, 3], 120)
            _stream(producer, values, rate, members, lambda: time.time() > settled + 1, 5)
            members.max_gap.clear()
            _stream(producer, values, rate, members, lambda: time.time() > settled + 4, 5)
            steady = max(members.max_gap.get(name, 0.0) for name in (0, 1))
            members.max_gap.clear()
            joined_at = time.time()
            newcomer = members.start()
            done = _stream(producer, values, rate, members, lambda: members.owned.get(newcomer) == 2, 120)
            _stream(producer, values, rate, members, lambda: time.time() > done + 1, 5)
            pause = max(members.max_gap.get(name, 0.0) for name in (0, 1))
            killed_at = time.time()
            members.kill(0)
            survived = _stream(producer, values, rate, members,
                               lambda: sorted(members.owned.get(n, 0) for n in (1, 2)) == [3, 3], 60)
            return done - joined_at, pause, steady, survived - killed_at
        finally:
            members.close()


def _stream(producer: Producer, values: list[bytes], rate: int, members: Members, condition, timeout_s: float
            ) -> float:
    """Send at ``rate`` records/s (10 ms steps) while waiting for ``condition``; returns when it held."""
    deadline = time.monotonic() + timeout_s
    step = max(1, rate // 100)
    while time.monotonic() < deadline:
        for number in range(step):
            producer.send("bench-rebalance", values[number % len(values)])
        members.drain(0.01)
        if condition():
            return time.time()
    raise RuntimeError(f"the group did not settle within {timeout_s} s")
