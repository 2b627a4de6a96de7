"""Bad input around failover: misconfigured nodes refuse to start with a clear message, a node without
a Raft majority does not serve clients, and the cluster refuses impossible requests with typed errors."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import zmq
from brokers import BrokerProcess, ClusterProcesses, NodeAddress, wait_until
from rill.client import Admin, Producer, protocol
from rill.client.errors import (
    FencedLeaderEpochError,
    InvalidReplicationFactorError,
    NotLeaderError,
    RillError,
    error_for_code,
)
from rill.client.network import NetworkClient

EXIT_TIMEOUT_S = 30


def exit_output(broker: BrokerProcess) -> tuple[int, str]:
    """Start a broker that should refuse to run: its exit code and its output."""
    broker.spawn()
    try:
        code = broker.wait_exit(EXIT_TIMEOUT_S)
    except Exception:
        broker.stop()
        raise AssertionError(f"broker still running after {EXIT_TIMEOUT_S} s:\n{broker.output()[-3000:]}") from None
    return code, broker.output()


def assert_clear_refusal(code: int, output: str, phrase: str) -> None:
    assert code != 0, f"exit code {code}, output:\n{output}"
    assert phrase in output, f"the output names the problem ({phrase!r}):\n{output}"
    assert "error:" in output, f"one 'error: ...' line:\n{output}"
    assert "Traceback" not in output, f"a message, not a traceback:\n{output}"


@pytest.fixture
def lone_broker(tmp_path: Path):
    """A factory of single brokers; every one is stopped by pid afterwards."""
    made: list[BrokerProcess] = []

    def make(**kwargs) -> BrokerProcess:
        broker = BrokerProcess(tmp_path / f"broker-{len(made)}", **kwargs)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop(timeout_s=10)


def test_failover_duplicate_node_ids_refused(lone_broker):
    first = NodeAddress.with_free_ports(1)
    twin = NodeAddress.with_free_ports(1)
    code, output = exit_output(lone_broker(nodes=[first, twin, NodeAddress.with_free_ports(2)]))
    assert_clear_refusal(code, output, "duplicate node ids")


def test_failover_data_dir_of_another_cluster_refused(lone_broker):
    broker = lone_broker(cluster_id="this-cluster")
    broker.storage_dir.mkdir(parents=True)
    (broker.storage_dir / "cluster.id").write_text("another-cluster\n")
    code, output = exit_output(broker)
    assert_clear_refusal(code, output, "belongs to cluster 'another-cluster'")
    assert (broker.storage_dir / "cluster.id").read_text() == "another-cluster\n", "the marker is left alone"


def test_failover_client_port_in_use_refused(lone_broker):
    broker = lone_broker()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", broker.port))
        squatter.listen()
        code, output = exit_output(broker)
    assert_clear_refusal(code, output, f"cannot listen on tcp://127.0.0.1:{broker.port}")


def test_failover_node_without_raft_peers_does_not_serve(lone_broker):
    """A node of a three-node list whose two peers never start: Raft finds no leader, so it must not serve
    clients. (It gives up with an error after its Raft wait, RAFT_READY_TIMEOUT_S = 60 s: longer than this
    test waits.) SIGTERM stops it cleanly meanwhile."""
    nodes = [NodeAddress.with_free_ports(node_id) for node_id in (1, 2, 3)]
    broker = lone_broker(nodes=nodes).spawn()
    deadline = time.monotonic() + 5
    refusals = []
    while time.monotonic() < deadline:
        assert broker.alive, f"exited early:\n{broker.output()}"
        with Admin(broker.bootstrap, request_timeout_ms=500) as admin:
            try:
                admin.list_topics()
                raise AssertionError(f"a node without a Raft majority served a client:\n{broker.output()}")
            except RillError as error:
                refusals.append(error)
        time.sleep(0.2)
    assert refusals and all(error.retriable for error in refusals), refusals
    print(f"a node without a Raft majority answers clients with: {sorted({repr(e) for e in refusals})[:3]}")
    assert "serving on" not in broker.output()
    broker.send_signal(signal.SIGTERM)
    code = broker.wait_exit(EXIT_TIMEOUT_S)
    assert code == 0, f"SIGTERM while waiting for Raft exits cleanly, got {code}:\n{broker.output()}"


def test_failover_replication_factor_above_live_brokers(cluster: ClusterProcesses):
    with cluster.admin() as admin:
        with pytest.raises(InvalidReplicationFactorError):
            admin.create_topic("rf-four", partitions=1, replication_factor=4)
    cluster.kill(3, signal.SIGKILL)
    wait_until(lambda: cluster.try_(lambda: cluster.live_brokers([1, 2])) == [1, 2], 30, "broker 3 to be fenced")
    with cluster.admin([1, 2]) as admin:
        with pytest.raises(InvalidReplicationFactorError):
            admin.create_topic("rf-three-of-two", partitions=1, replication_factor=3)
        admin.create_topic("rf-two-of-two", partitions=2, replication_factor=2)
        described = wait_until(lambda: cluster.try_(lambda: admin.describe_topic("rf-two-of-two")), 10,
                               "the new topic to show in the metadata")  # followers apply it a moment later
        assert "rf-three-of-two" not in admin.list_topics()
        assert all(sorted(p.replicas) == [1, 2] for p in described.partitions)


def fetch_raw(address: str, topic: str, leader_epoch: int) -> protocol.PartitionFetchResponse:
    context = zmq.Context()
    network = NetworkClient(context, "failover-test")
    try:
        request = protocol.FetchRequest(0, 1, 1_000_000, [protocol.TopicFetch(
            topic, [protocol.PartitionFetch(0, 0, 1_000_000, current_leader_epoch=leader_epoch)])])
        return network.request(address, protocol.FETCH, request, 10_000).topics[0].partitions[0]
    finally:
        network.close()
        context.term()


def test_failover_fetch_with_stale_leader_epoch_is_fenced(cluster: ClusterProcesses):
    topic = "epochs"
    before = cluster.create_topic(topic, config={"min.insync.replicas": 2})[0]
    with Producer(cluster.bootstrap, acks="all") as producer:
        for number in range(10):
            producer.send(topic, b"%d" % number)
        producer.flush(30)
    cluster.kill(before.leader, signal.SIGKILL)
    after = cluster.wait_for_leader(topic, not_in=[before.leader])
    assert after.leader_epoch > before.leader_epoch
    new_leader = cluster[after.leader].bootstrap

    stale = fetch_raw(new_leader, topic, before.leader_epoch)
    assert isinstance(error_for_code(stale.error_code), FencedLeaderEpochError), stale
    assert stale.records == b""
    current = fetch_raw(new_leader, topic, after.leader_epoch)
    assert current.error_code == 0 and current.records and current.high_watermark >= 10, current
    follower = next(n for n in cluster.alive_ids() if n != after.leader)
    elsewhere = fetch_raw(cluster[follower].bootstrap, topic, after.leader_epoch)
    assert isinstance(error_for_code(elsewhere.error_code), NotLeaderError), elsewhere
