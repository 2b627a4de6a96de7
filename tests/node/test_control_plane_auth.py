"""Only brokers holding the cluster secret reach the control plane.

- Raft port: pysyncobj unpickles what it receives. A pickle that creates a
  file, framed exactly as pysyncobj frames messages, is run by a plain
  SyncObj (the control), and dropped unread by a broker, whose Raft traffic
  needs the cluster password.
- Client port: broker-only requests (follower fetch, registration,
  heartbeat, AlterIsr, controlled shutdown, OffsetsForLeaderEpoch) are
  refused with ClusterAuthorizationError and change nothing. The same
  follower fetch sent to the inter-broker port with the cluster's CURVE key
  is what acknowledges the record, so the refusal is the only thing in the way.
- Inter-broker port: a peer without the cluster key gets no answer at all;
  a registration must match the node list; a broker with another secret
  never joins; the internal topic is still created through it.
"""

from __future__ import annotations

import pickle
import signal
import socket
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import zmq
from brokers import ClusterProcesses, free_ports, wait_until
from pysyncobj import SyncObj, SyncObjConf
from rill.client import Producer, protocol
from rill.client.errors import ClusterAuthorizationError, RillError, error_for_code
from rill.node.cluster_secret import ClusterSecret, generate_secret
from rill.node.network.internal_listener import curve_client

NO_ANSWER_S = 2.0  # how long a peer without the key waits to see that nothing comes back
DROP_TIMEOUT_S = 10.0
# Followers SIGSTOPped for a test stay in the ISR and registered meanwhile: the test, not a timeout, decides.
SETTINGS = {"session_timeout_ms": 60_000, "replica_lag_time_max_ms": 60_000}


class NoAnswer(Exception):
    """The broker did not answer (the connection never completed its handshake)."""


def ask(host: str, port: int, api: protocol.Api, body: Any, secure: Callable[[zmq.Socket], None] | None = None,
        timeout_s: float = 10.0) -> Any:
    """One request on a fresh DEALER socket: the response body, or the typed error it carried."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    try:
        if secure is not None:
            secure(dealer)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://{host}:{port}")
        dealer.send(protocol.encode_request(api, 1, body, "control-plane-test"))
        if not dealer.poll(int(timeout_s * 1000)):
            raise NoAnswer(f"no answer to {api.name} from {host}:{port} in {timeout_s} s")
        envelope = protocol.decode_response_envelope(dealer.recv())
    finally:
        dealer.close()
        context.term()
    if envelope.error_code:
        raise error_for_code(envelope.error_code, envelope.error_message)
    return protocol.decode_response_body(api.key, envelope.body)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcesses]:
    processes = ClusterProcesses(tmp_path_factory.mktemp("control-plane"), 3, settings=SETTINGS)
    try:
        processes.start_all()
        yield processes
    finally:
        for node_id in processes.node_ids:
            processes[node_id].send_signal(signal.SIGCONT)
        processes.stop_all(timeout_s=10)


def client_port(cluster: ClusterProcesses, node_id: int) -> tuple[str, int]:
    address = cluster[node_id].address
    return address.host, address.port


def internal_port(cluster: ClusterProcesses, node_id: int) -> tuple[str, int]:
    address = cluster[node_id].address
    return address.host, address.internal_port


def cluster_key(cluster: ClusterProcesses) -> Callable[[zmq.Socket], None]:
    """What a broker of this cluster connects to the inter-broker port with."""
    return curve_client(ClusterSecret(cluster.cluster_secret))


def registered_addresses(cluster: ClusterProcesses) -> dict[int, tuple[str, int]]:
    """Where the metadata sends clients, per broker id."""
    metadata = ask(*client_port(cluster, 1), protocol.METADATA, protocol.MetadataRequest([]))
    return {broker.node_id: (broker.host, broker.port) for broker in metadata.brokers}


def configured_addresses(cluster: ClusterProcesses) -> dict[int, tuple[str, int]]:
    return {node_id: client_port(cluster, node_id) for node_id in cluster.node_ids}


# ---- the Raft port (item 14) ---------------------------------------------------------


class _CreatesFile:
    """Unpickling this creates a file: stands for any code an attacker would run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def pysyncobj_frame(message: object) -> bytes:
    """A message framed as pysyncobj 0.3.17 sends it without a password (tcp_connection.TcpConnection.send)."""
    data = zlib.compress(pickle.dumps(message, 2), 3)
    return struct.pack("i", len(data)) + data


def send_and_wait_for_close(port: int, frame: bytes) -> None:
    """Send one frame to 127.0.0.1:port and wait until the peer closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=DROP_TIMEOUT_S) as connection:
        connection.sendall(frame)
        try:
            while connection.recv(4096):
                pass
        except ConnectionResetError:
            pass


def test_unprotected_pysyncobj_runs_the_payload(tmp_path: Path) -> None:
    """The control: the very frame the next test sends is unpickled, and runs, by a SyncObj without password."""
    marker = tmp_path / "ran-on-plain-syncobj"
    port = free_ports(1)[0]
    raft = SyncObj(f"127.0.0.1:{port}", [], SyncObjConf(autoTick=True, dynamicMembershipChange=False))
    try:
        wait_until(lambda: _accepts(port), 10, "the plain SyncObj to listen")
        with socket.create_connection(("127.0.0.1", port), timeout=DROP_TIMEOUT_S) as connection:
            connection.sendall(pysyncobj_frame(_CreatesFile(marker)))
            wait_until(marker.exists, 10, "the pickle to run on the plain SyncObj")
    finally:
        raft.destroy()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_raft_port_drops_a_pickle_without_the_cluster_password(cluster: ClusterProcesses, tmp_path: Path) -> None:
    marker = tmp_path / "ran-on-broker"
    for node_id in cluster.node_ids:
        send_and_wait_for_close(cluster[node_id].address.raft_port, pysyncobj_frame(_CreatesFile(marker)))
    assert not marker.exists(), "a broker unpickled a frame from a peer without the cluster password"
    with cluster.admin() as admin:  # Raft still commits: a topic is created and every node knows it
        admin.create_topic("after-raft-attack", partitions=1, replication_factor=3)
    cluster.wait_full_isr("after-raft-attack")
    assert all(cluster[node_id].alive for node_id in cluster.node_ids)


# ---- the client port (item 15) ---------------------------------------------------------


def follower_fetch(topic: str, replica_id: int, fetch_offset: int) -> protocol.FetchRequest:
    return protocol.FetchRequest(0, 1, 1 << 20, [protocol.TopicFetch(topic, [protocol.PartitionFetch(
        0, fetch_offset, 1 << 20)])], replica_id=replica_id)


def segment_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*.log"))


def test_follower_fetch_from_a_client_cannot_acknowledge_acks_all(cluster: ClusterProcesses) -> None:
    """With both followers stopped (still in the ISR) and min.insync.replicas=3, an acks=all record is only
    on the leader. Fetches that claim to be the followers, from a plain client, must not move the high
    watermark; the same fetches from a holder of the cluster key do (so they were well-formed)."""
    topic = "spoofed-follower"
    state = cluster.create_topic(topic, config={"min.insync.replicas": 3})[0]
    leader = state.leader
    followers = [replica for replica in state.replicas if replica != leader]
    high_watermark = state.high_watermark
    segment_dir = cluster[leader].partition_dir(topic, 0)
    size_before = segment_bytes(segment_dir)
    try:
        for follower in followers:
            cluster[follower].send_signal(signal.SIGSTOP)
        # Not idempotent: a new idempotent producer first needs a producer id, and the controller cannot
        # take a block of them through Raft with two of three brokers stopped.
        with Producer(cluster.bootstrap_of([leader]), acks="all", linger_ms=0, request_timeout_ms=20_000,
                      delivery_timeout_ms=25_000, enable_idempotence=False) as producer:
            record = producer.send(topic, b"only-on-the-leader", partition=0)
            wait_until(lambda: segment_bytes(segment_dir) > size_before, 10, "the leader to append the record")
            for follower in followers:
                with pytest.raises(ClusterAuthorizationError, match="broker-only"):
                    ask(*client_port(cluster, leader), protocol.FETCH,
                        follower_fetch(topic, follower, high_watermark + 1))
            assert not record.done(), f"acknowledged without replication: {record.exception() or record.result()}"
            assert cluster.partition(topic, node_ids=[leader]).high_watermark == high_watermark
            for follower in followers:  # the same requests, from a holder of the cluster key
                ask(*internal_port(cluster, leader), protocol.FETCH, follower_fetch(topic, follower,
                                                                                    high_watermark + 1),
                    secure=cluster_key(cluster))
            assert record.result(timeout=10).offset == high_watermark
    finally:
        for follower in followers:
            cluster[follower].send_signal(signal.SIGCONT)
    cluster.wait_full_isr(topic)


def test_registration_from_a_client_refused(cluster: ClusterProcesses) -> None:
    """A registration under a configured id would send that broker's clients to another address."""
    elsewhere = free_ports(1)[0]
    spoof = protocol.BrokerRegistrationRequest(2, "127.0.0.1", elsewhere, time.time_ns(), "test")
    for node_id in cluster.node_ids:
        with pytest.raises(ClusterAuthorizationError):
            ask(*client_port(cluster, node_id), protocol.BROKER_REGISTRATION, spoof)
    assert registered_addresses(cluster) == configured_addresses(cluster)


MISREGISTRATIONS: dict[str, tuple[int, Callable[[ClusterProcesses], tuple[str, int]], str]] = {
    "another port": (2, lambda cluster: ("127.0.0.1", free_ports(1)[0]), "node list has it at"),
    "another host": (2, lambda cluster: ("192.0.2.1", cluster[2].port), "node list has it at"),
    "unknown id": (7, lambda cluster: ("127.0.0.1", free_ports(1)[0]), "not in the node list"),
}


@pytest.mark.parametrize("case", sorted(MISREGISTRATIONS))
def test_registration_must_match_the_node_list(cluster: ClusterProcesses, case: str) -> None:
    """Even a holder of the cluster key registers only a configured id at its configured address."""
    node_id, address, why = MISREGISTRATIONS[case]
    request = protocol.BrokerRegistrationRequest(node_id, *address(cluster), time.time_ns(), "test")
    controller = cluster.wait_for_controller()
    with pytest.raises(ClusterAuthorizationError, match=why):
        ask(*internal_port(cluster, controller), protocol.BROKER_REGISTRATION, request, secure=cluster_key(cluster))
    assert registered_addresses(cluster) == configured_addresses(cluster)


BROKER_ONLY_REQUESTS: dict[str, Callable[[ClusterProcesses, protocol.PartitionMetadata], list[tuple]]] = {
    "heartbeat": lambda cluster, p: [(protocol.BROKER_HEARTBEAT, protocol.BrokerHeartbeatRequest(node_id, 1))
                                     for node_id in cluster.node_ids],
    "controlled shutdown": lambda cluster, p: [(protocol.CONTROLLED_SHUTDOWN,
                                                protocol.ControlledShutdownRequest(p.leader, 1))],
    "alter isr": lambda cluster, p: [(protocol.ALTER_ISR, protocol.AlterIsrRequest(
        p.leader, "broker-only", 0, p.leader_epoch, epoch, [p.leader])) for epoch in range(10)],
    "alter partition": lambda cluster, p: [(protocol.ALTER_PARTITION, protocol.AlterPartitionRequest(
        p.leader, [protocol.AlterPartitionTopic("broker-only", [protocol.AlterPartitionItem(
            0, p.leader_epoch, epoch, [p.leader]) for epoch in range(10)])]))],
    "offsets for leader epoch": lambda cluster, p: [(protocol.OFFSETS_FOR_LEADER_EPOCH,
                                                     protocol.OffsetsForLeaderEpochRequest([protocol.TopicEpochRequest(
                                                         "broker-only", [protocol.PartitionEpochRequest(0, 0)])]))],
    # Refused here, so the internal-topic test below still finds the topic missing.
    "create internal topic": lambda cluster, p: [(protocol.CREATE_INTERNAL_TOPIC, protocol.CreateTopicRequest(
        protocol.OFFSETS_TOPIC, 1, 1, {}, 5_000))],
}


@pytest.mark.parametrize("name", sorted(BROKER_ONLY_REQUESTS))
def test_broker_only_requests_from_a_client_refused(cluster: ClusterProcesses, name: str) -> None:
    """Refused on every node's client port, controller included; the partition and the brokers stay as they were."""
    with cluster.admin() as admin:
        if "broker-only" not in admin.list_topics():
            admin.create_topic("broker-only", partitions=1, replication_factor=3)
    before = cluster.wait_full_isr("broker-only")[0]
    metadata = ask(*client_port(cluster, 1), protocol.METADATA, protocol.MetadataRequest(["broker-only"]))
    partition = metadata.topics[0].partitions[0]
    for api, body in BROKER_ONLY_REQUESTS[name](cluster, partition):
        for node_id in cluster.node_ids:
            with pytest.raises(ClusterAuthorizationError, match="broker-only"):
                ask(*client_port(cluster, node_id), api, body)
    after = cluster.partition("broker-only")
    assert (after.leader, sorted(after.isr), after.leader_epoch) == (before.leader, sorted(before.isr),
                                                                     before.leader_epoch)
    assert sorted(cluster.live_brokers()) == cluster.node_ids


def test_consumers_still_fetch_on_the_client_port(cluster: ClusterProcesses) -> None:
    """replica_id -1 is a consumer's fetch, served as before."""
    cluster.create_topic("consumer-fetch")
    with Producer(cluster.bootstrap, acks="all") as producer:
        producer.send("consumer-fetch", b"hello", partition=0).result(timeout=10)
    leader = cluster.leader_of("consumer-fetch")
    response = ask(*client_port(cluster, leader), protocol.FETCH, follower_fetch("consumer-fetch", -1, 0))
    answer = response.topics[0].partitions[0]
    assert answer.error_code == 0 and answer.records and answer.high_watermark == 1


# ---- the inter-broker port ---------------------------------------------------------------


def _random_client_key(cluster: ClusterProcesses) -> Callable[[zmq.Socket], None]:
    """The brokers' real server key (so the handshake reaches the key check), any client key pair."""
    public, secret = zmq.curve_keypair()

    def secure(socket_: zmq.Socket) -> None:
        socket_.setsockopt(zmq.CURVE_SERVERKEY, ClusterSecret(cluster.cluster_secret).server_keys.public)
        socket_.setsockopt(zmq.CURVE_PUBLICKEY, public)
        socket_.setsockopt(zmq.CURVE_SECRETKEY, secret)

    return secure


STRANGERS: dict[str, Callable[[ClusterProcesses], Callable[[zmq.Socket], None] | None]] = {
    "plain": lambda cluster: None,
    "random client key": _random_client_key,
    "another cluster's keys": lambda cluster: curve_client(ClusterSecret(generate_secret())),
}


@pytest.mark.parametrize("stranger", sorted(STRANGERS))
def test_inter_broker_port_answers_only_the_cluster_key(cluster: ClusterProcesses, stranger: str) -> None:
    secure = STRANGERS[stranger](cluster)
    for node_id in cluster.node_ids:
        with pytest.raises(NoAnswer):
            ask(*internal_port(cluster, node_id), protocol.METADATA, protocol.MetadataRequest([]), secure=secure,
                timeout_s=NO_ANSWER_S)
        metadata = ask(*internal_port(cluster, node_id), protocol.METADATA, protocol.MetadataRequest([]),
                       secure=cluster_key(cluster))
        assert {broker.node_id for broker in metadata.brokers} == set(cluster.node_ids)


def test_internal_topic_created_through_the_inter_broker_port(cluster: ClusterProcesses) -> None:
    """A broker that is not the controller creates __consumer_offsets by asking the controller, over the
    inter-broker port: FindCoordinator on that broker's client port gets an answer once it exists."""
    with cluster.admin() as admin:
        assert protocol.OFFSETS_TOPIC not in admin.list_topics(), "this test needs the topic not created yet"
    controller = cluster.wait_for_controller()
    other = next(node_id for node_id in cluster.node_ids if node_id != controller)

    def coordinator() -> protocol.FindCoordinatorResponse | None:
        try:
            answer = ask(*client_port(cluster, other), protocol.FIND_COORDINATOR,
                         protocol.FindCoordinatorRequest("a-group"))
        except RillError:
            return None
        return answer if answer.error_code == 0 else None

    found = wait_until(coordinator, 30, f"broker {other} to find a coordinator")
    assert found.node_id in cluster.node_ids
    with cluster.admin() as admin:
        assert protocol.OFFSETS_TOPIC in admin.list_topics()


def test_broker_with_another_secret_never_joins(tmp_path: Path) -> None:
    """Node 3 has the node list but not the secret: Raft refuses its messages, so it never serves clients,
    while nodes 1 and 2 run as a cluster of two without it."""
    processes = ClusterProcesses(tmp_path / "cluster", 3)
    outsider = processes[3]
    outsider.cluster_secret = generate_secret()
    outsider.write_config("test", {"retention_check_interval_ms": 200})
    try:
        processes.start(1, wait=False)
        processes.start(2, wait=False)
        outsider.spawn()
        processes[1].wait_ready()
        processes[2].wait_ready()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert not outsider.answers(), f"a broker without the secret serves clients:\n{outsider.output()}"
            time.sleep(0.2)
        assert sorted(processes.live_brokers([1, 2])) == [1, 2]
        assert "serving on" not in outsider.output()
    finally:
        processes.stop_all(timeout_s=10)


def test_broker_whose_node_list_differs_is_refused_and_says_so(tmp_path: Path) -> None:
    """Node 3 holds the secret but believes it serves clients on another port than the others' node list
    says: the controller refuses its registration (clients would be sent where it is not), it never serves,
    and its log says why, once."""
    processes = ClusterProcesses(tmp_path / "cluster", 3)
    stray = processes[3]
    elsewhere = replace(stray.address, port=free_ports(1)[0])
    stray.nodes = tuple(elsewhere if node.node_id == 3 else node for node in stray.nodes)
    stray.address, stray.port = elsewhere, elsewhere.port
    stray.write_config("test", {"retention_check_interval_ms": 200})
    try:
        for node_id in (1, 2):  # a majority with a controller first: were node 3 elected, it would accept itself
            processes.start(node_id, wait=False)
        processes[1].wait_ready()
        processes[2].wait_ready()
        processes.start(3, wait=False)
        wait_until(lambda: "refuses to register this broker" in stray.output(), 30, "node 3 to report the refusal")
        assert not stray.answers()
        assert stray.output().count("refuses to register this broker") == 1
        assert f"node list has it at 127.0.0.1:{processes.addresses[2].port}" in stray.output()
        assert sorted(processes.live_brokers([1, 2])) == [1, 2]
    finally:
        processes.stop_all(timeout_s=10)
