"""The idempotent producer across kill -9 of a partition leader, on brokers that lose 20% of their
produce answers: every acknowledged record is stored once, at the offset its acknowledgement gave, and
each partition keeps the order records were sent in.

Each lost answer makes the producer time out (request_timeout_ms) and send the batch again, which the
leader stored already; the kill makes it resend what the dead leader held unanswered to the new one.
Without idempotence either would store those batches twice; with it the leader (or the follower that
took over, which rebuilt the producer's state from what it replicated) answers a retry with the offsets
it stored the batch at.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from typing import Self

import pytest
from brokers import ClusterProcesses, read_partition, wait_until
from rill.client import Producer
from rill.client.partitioner import partition_for_key

TOPIC = "idempotent"
PARTITIONS = 3
RECORDS_PER_S = 1_000
KEYS = [b"order-%d" % number for number in range(50)]


class KeyedWriter:
    """A thread sending keyed records at a steady rate; each value is its partition's counter (b"0",
    b"1", ...), so order and duplicates show per partition. Notes where each acknowledged record was
    stored and every failure, from the futures' callbacks."""

    def __init__(self, bootstrap: str, **producer_settings):
        self.bootstrap = bootstrap
        self.settings = producer_settings
        self.sent: dict[int, int] = defaultdict(int)  # partition -> records sent to it
        self.stored_at: dict[tuple[int, int], int] = {}  # (partition, counter) -> offset
        self.failed: list[tuple[int, int, BaseException]] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keyed-writer", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def acked(self) -> int:
        return len(self.stored_at)

    def _done(self, partition: int, counter: int, future) -> None:
        error = future.exception()
        with self._lock:
            if error is None:
                self.stored_at[(partition, counter)] = future.result().offset
            else:
                self.failed.append((partition, counter, error))

    def _run(self) -> None:
        try:
            with Producer(self.bootstrap, **self.settings) as producer:
                next_at = time.monotonic()
                for number in range(10_000_000):
                    if self._stop.is_set():
                        return
                    if number % 20 == 0:  # 20 records per step keeps to RECORDS_PER_S without a busy loop
                        next_at += 20 / RECORDS_PER_S
                        if self._stop.wait(max(0.0, next_at - time.monotonic())):
                            return
                    key = KEYS[number % len(KEYS)]
                    partition = partition_for_key(key, PARTITIONS)
                    counter = self.sent[partition]
                    future = producer.send(TOPIC, b"%d" % counter, key=key)
                    self.sent[partition] = counter + 1
                    future.add_done_callback(lambda f, p=partition, c=counter: self._done(p, c, f))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def wait_acked(self, count: int, timeout_s: float, what: str) -> None:
        wait_until(lambda: self.acked >= count or self.error is not None, timeout_s,
                   f"{what} ({self.acked} acknowledged, {len(self.failed)} failed)")
        assert self.error is None, f"the writer failed: {self.error!r}"

    def stop(self) -> None:
        """Stop sending; closing the producer waits for every outstanding record's answer."""
        self._stop.set()
        self._thread.join(90)
        assert not self._thread.is_alive(), "the writer did not stop"
        assert self.error is None, f"the writer failed: {self.error!r}"


@pytest.mark.cluster_settings(testing_drop_produce_responses=0.2)
def test_kill_9_leader_with_lost_answers_stores_every_acknowledged_record_once_in_order(cluster: ClusterProcesses,
                                                                                         caplog):
    caplog.set_level(logging.WARNING, logger="rill.client.sender")
    cluster.create_topic(TOPIC, partitions=PARTITIONS, config={"min.insync.replicas": 2})
    with KeyedWriter(cluster.bootstrap, linger_ms=5, batch_size=16_384, request_timeout_ms=1_500,
                     delivery_timeout_ms=60_000, retry_backoff_ms=50) as writer:
        writer.wait_acked(2_000, 60, "records acknowledged before the kill")
        leader = cluster.leader_of(TOPIC, 0)
        cluster.kill(leader, signal.SIGKILL)
        acked_at_kill = writer.acked
        cluster.wait_for_leader(TOPIC, 0, not_in=[leader])
        writer.wait_acked(acked_at_kill + 2_000, 60, "records acknowledged after the kill")
    assert not writer.failed, f"{len(writer.failed)} records failed, first: {writer.failed[:3]}"
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert any("RequestTimeoutError" in message for message in retries), "lost answers made the producer retry"

    for partition in range(PARTITIONS):
        acked = {counter: offset for (p, counter), offset in writer.stored_at.items() if p == partition}
        records = read_partition(cluster.bootstrap, TOPIC, partition, min_end_offset=max(acked.values()) + 1)
        counters = [int(record.value) for record in records]
        duplicates = len(counters) - len(set(counters))
        assert duplicates == 0, f"partition {partition}: {duplicates} records stored twice"
        assert counters == sorted(counters), f"partition {partition}: records are stored in send order"
        assert set(acked) <= set(counters), f"partition {partition}: acknowledged records lost"
        misplaced = [(counter, offset) for counter, offset in acked.items() if counters[offset] != counter]
        assert not misplaced, f"partition {partition}: (counter, acknowledged offset) elsewhere: {misplaced[:5]}"
