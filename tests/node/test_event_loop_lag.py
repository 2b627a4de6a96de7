"""The event-loop lag monitor: what it measures, what it keeps, and what a broker reports of it."""

from __future__ import annotations

import asyncio
import time

import msgspec
from brokers import wait_until
from rill.client import protocol
from rill.cluster.probe import node_status
from rill.node.event_loop_lag import EventLoopLagMonitor, percentile


def test_percentiles_are_nearest_rank_over_the_window():
    monitor = EventLoopLagMonitor(interval_ms=50, window_s=5)  # 100 samples
    for lag_ms in range(1, 201):
        monitor.record(float(lag_ms))
    summary = monitor.summary()
    assert summary.samples == 100, "only the last window_s of samples is kept"
    assert (summary.p50_ms, summary.p99_ms, summary.max_ms) == (150.0, 199.0, 200.0)
    assert percentile([], 0.99) == 0.0
    assert EventLoopLagMonitor().summary() == (0.0, 0.0, 0.0, 0)


def test_the_monitor_sees_a_blocked_loop():
    monitor = EventLoopLagMonitor(interval_ms=10)

    async def block_the_loop() -> None:
        watching = asyncio.ensure_future(monitor.run())
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the point: a blocking call on the loop, as a synchronous fsync
        await asyncio.sleep(0.05)
        watching.cancel()

    asyncio.run(block_the_loop())
    summary = monitor.summary()
    assert summary.max_ms >= 250, summary
    assert summary.p50_ms < summary.max_ms


def test_a_broker_reports_its_loop_lag_and_no_offline_partitions(broker):
    def measured():
        report = node_status(broker.bootstrap)
        return report if report is not None and report.loop_lag_ms_max > 0 else None

    report = wait_until(measured, 30, "a node status with loop lag samples")
    assert 0 <= report.loop_lag_ms_p50 <= report.loop_lag_ms_p99 <= report.loop_lag_ms_max
    assert report.offline_partitions == []


def test_node_status_decodes_across_versions():
    """A report from a node without the newer fields decodes with their defaults, and an older reader
    (the struct as it was) decodes a newer report."""

    class OldNodeStatusResponse(protocol.Struct):
        node_id: int
        raft_role: str
        raft_leader_id: int
        controller_id: int
        fenced: bool
        partitions: int
        partitions_led: int
        under_replicated: int

    old = OldNodeStatusResponse(1, "leader", 1, 1, False, 3, 2, 0)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=protocol.NodeStatusResponse)
    assert (decoded.offline_partitions, decoded.loop_lag_ms_p99) == ([], 0.0)
    new = protocol.NodeStatusResponse(1, "leader", 1, 1, False, 3, 2, 0, ["orders-0"], 0.1, 2.0, 9.0)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(new), type=OldNodeStatusResponse) == old
