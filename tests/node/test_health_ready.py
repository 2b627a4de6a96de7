"""/health and /ready on a node's HTTP port: liveness from the start, readiness once registered and caught up.

Against real brokers, the readiness scenario that can be held as long as a
test needs: node 1 of a three-node cluster starts alone, so it has no Raft
majority, no controller and cannot register (503, with those reasons) while
its HTTP port already answers /health. Once nodes 2 and 3 start, all three
become ready. Then node 3 is killed and restarted behind: its /ready says
200 only once the metadata has it back in the ISR. A fenced broker or one
out of the ISR is hard to hold from outside (a stopped process cannot
answer, and catching up takes milliseconds), so ``readiness_reasons`` is
checked directly for those, with metadata built by hand.
"""

from __future__ import annotations

import signal
import socket

from brokers import LOCAL_HOST, ClusterProcesses, wait_until
from node_http import answers, get, get_json
from rill.client import Producer
from rill.node.http.probes import PARTITIONS_NAMED_MAX, readiness_reasons
from rill.node.metadata.state import BrokerRegistration, PartitionState, TopicState


def readiness(port: int) -> tuple[int, dict] | None:
    """(status, body) of /ready; None while the port does not answer (the node is starting)."""
    try:
        return get_json(port, "/ready")
    except OSError:
        return None


def wait_ready(port: int, what: str, seen: list | None = None) -> dict:
    def ready() -> dict | None:
        answer = readiness(port)
        if answer is not None and seen is not None:
            seen.append(answer)
        return answer[1] if answer is not None and answer[0] == 200 else None

    return wait_until(ready, 45, what, interval_s=0.02)


def test_ready_once_raft_has_a_majority_and_a_restarted_node_once_back_in_the_isr(tmp_path, topic_name):
    cluster = ClusterProcesses(tmp_path, 3)
    try:
        port = cluster.start(1, wait=False).address.http_port
        wait_until(lambda: answers(port), 30, "node 1's HTTP port")
        assert get_json(port, "/health") == (200, {"status": "ok", "node_id": 1})
        status, alone = get_json(port, "/ready")
        assert status == 503 and alone["ready"] is False and alone["node_id"] == 1
        assert any("no Raft leader" in reason for reason in alone["reasons"]), alone
        assert any("not registered" in reason for reason in alone["reasons"]), alone

        cluster.start_all()
        for node in cluster.nodes.values():
            assert wait_ready(node.address.http_port, f"node {node.node_id} ready")["reasons"] == []

        cluster.create_topic(topic_name)
        with Producer(cluster.bootstrap, acks="all") as producer:
            for number in range(200):
                producer.send(topic_name, b"%d" % number, partition=0)
        cluster.kill(3, signal.SIGKILL)
        cluster.wait_for_partition(topic_name, lambda p: 3 not in p.isr, "node 3 out of the ISR")
        with Producer(cluster.bootstrap_of([1, 2]), acks="all") as producer:  # node 3 has these to catch up on
            for number in range(200, 2_000):
                producer.send(topic_name, b"%d" % number, partition=0)
        assert get_json(port, "/ready")[0] == 200, "a node is not unready because another one is away"

        seen: list = []
        cluster.start(3, wait=False)
        wait_ready(cluster[3].address.http_port, "node 3 ready again", seen)
        assert 3 in cluster.partition(topic_name, node_ids=[3]).isr, "ready: back in the ISR, as node 3 sees it"
        assert all(body["ready"] == (status == 200) and bool(body["reasons"]) == (status == 503)
                   for status, body in seen), seen
    finally:
        cluster.stop_all()


def raw_status(port: int, request: bytes) -> int:
    """The status code the port answers to the bytes of ``request``, sent as they are."""
    with socket.create_connection((LOCAL_HOST, port), timeout=5) as raw:
        raw.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = raw.recv(4096)
            assert chunk, f"the connection closed after {answer!r}"
            answer += chunk
    return int(answer.split(b" ")[1])


def test_health_and_ready_answer_bad_paths_methods_and_queries_without_a_500(shared_broker):
    port = shared_broker.address.http_port
    assert get_json(port, "/health") == (200, {"status": "ok", "node_id": 1})
    assert get(port, "/nope")[0] == 404
    assert get(port, "/health/../metrics")[0] == 404
    assert get(port, "/%ff%00")[0] == 404
    for query in ("?%zz=%%&&==", "?a=%E0%A4%A", "?x=" + "y" * 2_000):  # no parameters: a query is ignored
        assert get(port, "/ready" + query)[0] == 200, query
        assert get(port, "/health" + query)[0] == 200, query
        assert get(port, "/metrics" + query)[0] == 200, query
    assert raw_status(port, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") == 405
    assert raw_status(port, b"\x00\xffGARBAGE\r\n\r\n") == 400, "a request line that is not HTTP gets 400"
    assert get_json(port, "/health")[0] == 200, "the port serves on"


# ---- the readiness rules, with metadata built by hand ---------------------------------------------


def topic(name: str, *partitions: tuple[tuple[int, ...], tuple[int, ...]]) -> TopicState:
    """A topic whose partitions have these (replicas, ISR), led by the first ISR member."""
    return TopicState(name, f"id-{name}", {}, tuple(PartitionState(replicas, isr[0], 1, isr)
                                                   for replicas, isr in partitions))


BROKERS = {1: BrokerRegistration(1, LOCAL_HOST, 9092, incarnation=7), 2: BrokerRegistration(2, LOCAL_HOST, 9093, 5)}
IN_SYNC = {"orders": topic("orders", ((1, 2), (1, 2)), ((2, 1), (2, 1)))}


def test_ready_when_registered_with_a_controller_and_in_every_isr():
    assert readiness_reasons(1, 7, 2, BROKERS, IN_SYNC) == []


def test_not_ready_without_controller_registration_or_while_fenced():
    assert any("no Raft leader" in reason for reason in readiness_reasons(1, 7, -1, BROKERS, IN_SYNC))
    assert readiness_reasons(1, 8, 2, BROKERS, IN_SYNC) == [
        "not registered with the controller yet: it does not serve clients"], "a new incarnation registers anew"
    assert len(readiness_reasons(3, 1, 2, BROKERS, {})) == 1, "a node the metadata does not know is not registered"
    fenced = {**BROKERS, 1: BrokerRegistration(1, LOCAL_HOST, 9092, 7, fenced=True)}
    (reason,) = readiness_reasons(1, 7, 2, fenced, IN_SYNC)
    assert reason.startswith("fenced by the controller")


def test_not_ready_while_out_of_the_isr_of_a_partition_it_replicates():
    behind = {"orders": topic("orders", ((1, 2), (2,)), ((2, 1), (2, 1)), ((2,), (2,)))}
    assert readiness_reasons(1, 7, 2, BROKERS, behind) == [
        "catching up: not in the ISR of 1 partitions it replicates (orders-0)"]
    assert readiness_reasons(2, 5, 2, BROKERS, behind) == [], "node 2 is in every ISR it belongs to"
    many = {"t": topic("t", *[((1, 2), (2,))] * (PARTITIONS_NAMED_MAX + 3))}
    (reason,) = readiness_reasons(1, 7, 2, BROKERS, many)
    assert reason.endswith("(t-0, t-1, t-2, t-3, t-4 and 3 more)")
