"""kill -9 of the controller (the Raft leader) under acks="all" load: writes go on, another broker
becomes controller, and the killed broker rejoins when restarted."""

from __future__ import annotations

import signal

from brokers import (
    AckedWriter,
    ClusterProcesses,
    check_acknowledged_records,
    read_partition,
    wait_until,
)


def test_failover_kill_9_controller_under_load(cluster: ClusterProcesses):
    topic = "kill-controller"
    cluster.create_topic(topic, config={"min.insync.replicas": 2})
    with AckedWriter(cluster.bootstrap, topic, max_in_flight_requests_per_connection=1,
                     retry_backoff_ms=50) as writer:
        writer.wait_acked(1_000, 60)
        controller = cluster.controller_id()
        assert controller in cluster.node_ids
        led_partition = cluster.leader_of(topic) == controller
        cluster.kill(controller, signal.SIGKILL)
        others = [node_id for node_id in cluster.node_ids if node_id != controller]

        writer.wait_more_acked(1_000, 60, "writes to go on after kill -9 of the controller")
        def one_new_controller() -> int | None:  # both survivors name the same one, not the killed broker
            named = {cluster.try_(lambda: cluster.controller_id([node_id])) for node_id in others}
            return named.pop() if len(named) == 1 and named <= set(others) else None

        assert wait_until(one_new_controller, 30, "the survivors to agree on a new controller") in others
        wait_until(lambda: cluster.try_(lambda: cluster.live_brokers(others)) == others, 30,
                   f"the new controller to fence broker {controller}")
        if led_partition:
            assert cluster.wait_for_leader(topic, not_in=[controller]).leader in others

        cluster.start(controller)
        wait_until(lambda: cluster.try_(lambda: cluster.live_brokers(cluster.node_ids)) == cluster.node_ids, 30,
                   f"broker {controller} to be live again")
        cluster.wait_in_isr(topic, controller, timeout_s=60)
        cluster.wait_for_controller(node_ids=[controller])  # the restarted broker knows the controller
        writer.wait_more_acked(1_000, 60, "writes to go on after the old controller rejoined")
        writer.stop()
    assert not writer.failed, f"{len(writer.failed)} writes failed, first: {writer.failed[:3]}"
    records = read_partition(cluster.bootstrap, topic, min_end_offset=writer.end_offset())
    check_acknowledged_records(records, writer.acked, stored_at=writer.stored_at)
