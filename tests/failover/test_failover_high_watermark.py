"""The high watermark across leader changes: what consumers were told is committed stays committed.

A consumer sees records below the high watermark, and end_offsets reports
it. Both promise the records are on every in-sync replica, so after a
leader change the end offset must not drop below what was already reported
or consumed (Kafka answers ListOffsets with OFFSET_NOT_AVAILABLE until a new
leader's high watermark has caught up, KAFKA-2334): a consumer that reads
"up to the end" would stop short, and lag would turn negative.
"""

from __future__ import annotations

import signal
import time

from brokers import ClusterProcesses
from rill.client import Consumer, Producer, TopicPartition
from rill.client.errors import RillError


def end_offset(bootstrap: str, topic: str) -> int | None:
    tp = TopicPartition(topic, 0)
    try:
        with Consumer(bootstrap, request_timeout_ms=1_000) as consumer:
            return consumer.end_offsets([tp])[tp]
    except RillError:
        return None


def poll_end_offsets(bootstrap: str, topic: str, for_s: float, until_answered_s: float = 0.0) -> list[int | None]:
    """End offsets asked every 20 ms for ``for_s`` (longer, up to ``until_answered_s``, until one answer
    came); None where the broker refused (e.g. OffsetNotAvailable), which is fine."""
    seen: list[int | None] = []
    started = time.monotonic()
    while time.monotonic() - started < for_s or (
            not any(value is not None for value in seen) and time.monotonic() - started < until_answered_s):
        seen.append(end_offset(bootstrap, topic))
        time.sleep(0.02)
    return seen


def test_failover_new_leader_does_not_report_a_lower_end_offset(cluster: ClusterProcesses):
    """Followers learn the high watermark from their next fetch answer, which (long poll) comes only with
    new data or after max_wait: a write acknowledged just before a leader change is committed, but the
    new leader may not know yet. Here the other follower cannot fetch from the new leader for half a
    second (SIGSTOPped), so the new leader's high watermark cannot move meanwhile; then and after, the end
    offset must not drop below the acknowledged write. (The new leader is the controller, so that the
    old leader's controlled shutdown commits while the other follower is paused.)"""
    controller = cluster.controller_id()
    with cluster.admin() as admin:  # a topic whose successor is the controller: the other two go away
        for attempt in range(30):
            topic = f"stale-high-watermark-{attempt}"
            admin.create_topic(topic, partitions=1, replication_factor=3)
            if admin.describe_topic(topic).partitions[0].replicas[1] == controller:
                break
            admin.delete_topic(topic)
        else:
            raise AssertionError(f"no topic placed with the controller {controller} second in 30 tries")
    state = cluster.wait_full_isr(topic)[0]
    leader, successor, other = state.replicas  # the controller picks the next in-sync replica in this order
    with Producer(cluster.bootstrap, acks="all") as producer:
        for number in range(100):
            producer.send(topic, b"%d" % number)
        producer.flush(30)
        committed = producer.send(topic, b"last").result(timeout=30).offset + 1
    reported = end_offset(cluster[leader].bootstrap, topic)
    assert reported == committed, f"the leader reports {reported}, acknowledged up to {committed}"

    cluster.kill(other, signal.SIGSTOP)  # shorter than the session timeout: it stays in the ISR
    try:
        cluster.kill(leader, signal.SIGTERM)  # controlled shutdown: the successor leads at once
        seen = poll_end_offsets(cluster[successor].bootstrap, topic, 0.5)
    finally:
        cluster.kill(other, signal.SIGCONT)
    seen += poll_end_offsets(cluster[successor].bootstrap, topic, 1.0, until_answered_s=15)
    answers = [value for value in seen if value is not None]
    assert answers, f"broker {successor} answered no ListOffsets in 15 s after it became leader"
    lower = [value for value in answers if value < committed]
    assert not lower, (f"after the leader change broker {successor} reported end offsets {sorted(set(lower))} "
                       f"below {committed}, the end of an acknowledged (committed) write "
                       f"({len(lower)} of {len(answers)} answers)")
