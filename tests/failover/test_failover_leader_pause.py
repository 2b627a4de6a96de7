"""SIGSTOP of a partition leader for 5 s, then SIGCONT, under acks="all" load.

While it is stopped the controller fences it (no heartbeats for
session_timeout_ms, 3 s by default; its port stays open, so it is not taken
for dead) and another in-sync replica leads at a higher epoch. When
it resumes, it must not go on as leader: it learns the new epoch, follows,
re-registers, and returns to the ISR. No acknowledged write is lost.
"""

from __future__ import annotations

import re
import signal
import time

from brokers import (
    AckedWriter,
    ClusterProcesses,
    check_acknowledged_records,
    read_partition,
)

PAUSE_S = 5.0  # longer than the default session timeout


def test_failover_sigstop_leader_for_5_s(cluster: ClusterProcesses):
    topic = "paused-leader"
    cluster.create_topic(topic, config={"min.insync.replicas": 2})
    with AckedWriter(cluster.bootstrap, topic, max_in_flight_requests_per_connection=1,
                     retry_backoff_ms=50) as writer:
        writer.wait_acked(1_000, 60)
        before = cluster.partition(topic)
        paused = before.leader
        others = [node_id for node_id in cluster.node_ids if node_id != paused]
        registrations_before = len(re.findall("registered with controller", cluster.output(paused)))

        cluster.kill(paused, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            during = cluster.wait_for_partition(
                topic, lambda p: p.leader in others and p.leader_epoch > before.leader_epoch,
                f"another replica to lead while broker {paused} is stopped", timeout_s=PAUSE_S + 30,
                node_ids=others)
            assert paused not in during.isr, f"the stopped leader is out of the ISR: {during}"
            time.sleep(max(0.0, PAUSE_S - (time.monotonic() - stopped_at)))  # the scenario: stopped for 5 s
            acked_during_pause = len(writer.acked)
        finally:
            cluster.kill(paused, signal.SIGCONT)

        # The old leader, asked itself, knows it no longer leads at its old epoch, and is back in sync.
        after = cluster.wait_for_partition(
            topic, lambda p: p.leader_epoch > before.leader_epoch and paused in p.isr and p.leader > 0,
            f"broker {paused} to follow the new epoch and rejoin the ISR", timeout_s=60, node_ids=[paused])
        assert after.leader_epoch >= during.leader_epoch
        assert cluster[paused].alive, "the resumed broker keeps running"
        writer.wait_more_acked(1_000, 60, "writes to go on after the old leader resumed")
        writer.stop()
    assert not writer.failed, f"{len(writer.failed)} writes failed, first: {writer.failed[:3]}"
    assert len(writer.acked) > acked_during_pause
    registrations_after = len(re.findall("registered with controller", cluster.output(paused)))
    assert registrations_after > registrations_before, "the fenced broker registered again after SIGCONT"

    records = read_partition(cluster.bootstrap, topic, min_end_offset=writer.end_offset())
    check_acknowledged_records(records, writer.acked, stored_at=writer.stored_at)
