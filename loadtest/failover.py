"""Failover time: kill -9 of a partition's leader until the first acks=all write sent after it is acknowledged.

A producer sends an acks=all record every 5 ms from the kill on; the time
counted ends at the first acknowledgement. The killed broker is restarted
and the partition's three in-sync replicas awaited before the next round.
"""

from __future__ import annotations

import signal
import time

from rill.client import Admin, Producer
from rill.cluster import launcher
from rill.cluster.layout import ClusterLayout

PROBE_INTERVAL_S = 0.005


def bench_failover(layout: ClusterLayout, rounds: int, topic: str = "bench-failover") -> list[float]:
    """Seconds from kill -9 of the partition leader to the first acks=all write sent after the kill, per round."""
    with Admin(layout.bootstrap) as admin:
        admin.create_topic(topic, partitions=1, replication_factor=3, config={"min.insync.replicas": 2})
        times = []
        with Producer(layout.bootstrap, acks="all", linger_ms=0, request_timeout_ms=2_000,
                      retry_backoff_ms=20) as producer:
            for _ in range(rounds):
                _wait_for_full_isr(admin, topic)
                leader = admin.describe_topic(topic).partitions[0].leader
                killed_at = time.monotonic()
                launcher.signal_node(layout, leader, signal.SIGKILL)
                times.append(first_ack_after(lambda: producer.send(topic, b"failover probe"), killed_at)
                             - killed_at)
                launcher.start_nodes(layout, [leader])
    return times


def _wait_for_full_isr(admin: Admin, topic: str, timeout_s: float = 60) -> None:
    """Until the partition is back to three in-sync replicas led by its preferred leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        partition = admin.describe_topic(topic).partitions[0]
        if len(partition.isr) == 3 and partition.leader == partition.replicas[0]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{topic} did not get its three in-sync replicas back in {timeout_s} s")


def first_ack_after(send, killed_at: float, timeout_s: float = 30) -> float:
    """Call ``send()`` (a future with add_done_callback) every 5 ms from ``killed_at`` on; the monotonic
    time the first one is acknowledged."""
    acked: list[float] = []
    deadline = killed_at + timeout_s
    while not acked and time.monotonic() < deadline:
        future = send()
        future.add_done_callback(lambda f: acked.append(time.monotonic()) if f.exception() is None else None)
        time.sleep(PROBE_INTERVAL_S)
    if not acked:
        raise RuntimeError(f"no write succeeded within {timeout_s} s of the kill")
    return min(acked)
