"""A broker's connections to other brokers (node/network/broker_client.py) are bounded and do not die of bad
bytes: its queue to a peer that stops reading is bounded (SNDHWM), a peer's oversized message drops
the connection rather than filling memory (MAXMSGSIZE), and garbage answers leave the reader running.

A real broker cannot be pointed at a misbehaving peer (its peers are Raft members it needs), so these tests
run a BrokerClient on an asyncio loop against a fake peer: a ZeroMQ ROUTER socket on loopback.
"""

from __future__ import annotations

import asyncio

import pytest
import zmq
import zmq.asyncio
from brokers import free_ports
from rill.client import protocol
from rill.client.errors import BrokerNotAvailableError, RequestTimeoutError
from rill.node.network.broker_client import QUEUE_MESSAGES_MAX, BrokerClient
from rill.node.supervisor import TaskSupervisor

MAX_RESPONSE_BYTES = 1 << 20
PEER = 2


def plain(socket: zmq.Socket) -> None:
    """No CURVE: the fake peer speaks plain TCP."""


class Peer:
    """A fake broker: a ROUTER that answers as a test tells it to."""

    def __init__(self, context: zmq.asyncio.Context, receive_queue_max: int = 1_000):
        self.port = free_ports(1)[0]
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, receive_queue_max)
        self.socket.bind(f"tcp://127.0.0.1:{self.port}")

    async def next_request(self) -> tuple[bytes, protocol.RequestEnvelope]:
        identity, frame = await self.socket.recv_multipart()
        return identity, protocol.decode_request_envelope(frame)

    async def answer(self, identity: bytes, *frames: bytes) -> None:
        for frame in frames:
            await self.socket.send_multipart([identity, frame])


def run(test) -> TaskSupervisor:
    """Run ``test(client, peer)`` on a fresh loop with a supervised BrokerClient; returns the supervisor."""
    supervisor = TaskSupervisor(lambda: None, stop_grace_s=60)

    async def main() -> None:
        context = zmq.asyncio.Context()
        peer = Peer(context)
        client = BrokerClient(context, 1, {PEER: f"127.0.0.1:{peer.port}"}, plain,
                              max_response_bytes=MAX_RESPONSE_BYTES, spawn=supervisor.start)
        try:
            await test(client, peer)
        finally:
            client.close()
            context.destroy(linger=0)

    try:
        asyncio.run(main())
    finally:
        supervisor.close()
    return supervisor


async def status_request(client: BrokerClient, timeout_ms: int = 5_000) -> asyncio.Future:
    """A NodeStatus request in flight to the peer, sent once the client is connected (until then, with
    IMMEDIATE, a request fails at once with BrokerNotAvailableError)."""
    for _ in range(200):
        request = asyncio.ensure_future(client.request(PEER, protocol.NODE_STATUS, protocol.NodeStatusRequest(),
                                                       timeout_ms))
        await asyncio.sleep(0.02)
        if not request.done() or not isinstance(request.exception(), BrokerNotAvailableError):
            return request
    raise AssertionError("the client never connected to the peer")


def status_response(correlation_id: int) -> bytes:
    return protocol.encode_response(correlation_id, protocol.NodeStatusResponse(2, "leader", 2, 2, False, 0, 0, 0))


def test_garbage_answers_leave_the_reader_running():
    async def test(client: BrokerClient, peer: Peer) -> None:
        waiting = await status_request(client)
        identity, envelope = await peer.next_request()
        not_utf8 = b"\x94\x01\x00\xa2\xff\xfe\xc0"  # [1, 0, "\xff\xfe", nil]: an error message that is not UTF-8
        await peer.answer(identity, b"\xff garbage", not_utf8, b"", b"\x94" + b"\xcc" * 100,
                          status_response(envelope.correlation_id))
        status = await waiting
        assert status.node_id == 2, "the answer after the garbage is matched to its request"

    supervisor = run(test)
    assert supervisor.failure is None, "the reader did not die"


def test_a_body_that_does_not_decode_fails_only_its_request():
    async def test(client: BrokerClient, peer: Peer) -> None:
        first = await status_request(client)
        identity, envelope = await peer.next_request()
        bad_body = protocol.encode_response(envelope.correlation_id, protocol.BrokerResult(0, "x"))
        await peer.answer(identity, bad_body.replace(b"\xa1x", b"\xa1\xff"))
        with pytest.raises(Exception, match="malformed node_status response"):
            await first
        second = await status_request(client)
        identity, envelope = await peer.next_request()
        await peer.answer(identity, status_response(envelope.correlation_id))
        assert (await second).node_id == 2

    assert run(test).failure is None


def test_an_oversized_answer_drops_the_connection_which_comes_back():
    async def test(client: BrokerClient, peer: Peer) -> None:
        first = await status_request(client, 1_000)
        identity, envelope = await peer.next_request()
        await peer.answer(identity, b"\x00" * (MAX_RESPONSE_BYTES + 1))
        with pytest.raises(RequestTimeoutError):
            await first
        second = await status_request(client)  # ZeroMQ reconnects
        identity, envelope = await peer.next_request()
        await peer.answer(identity, status_response(envelope.correlation_id))
        assert (await second).node_id == 2

    assert run(test).failure is None


def test_the_queue_to_a_peer_that_stops_reading_is_bounded():
    """A peer that reads nothing: once ZeroMQ's queue (SNDHWM) and the socket buffers are full, requests fail
    at once with BrokerNotAvailableError instead of queueing without bound."""
    sent = 5 * QUEUE_MESSAGES_MAX
    body = protocol.ProduceRequest(1, 100, [protocol.TopicProduceData("t", [
        protocol.PartitionProduceData(0, b"\x00" * 65_536)])])

    async def test(client: BrokerClient, peer: Peer) -> None:
        peer.socket.setsockopt(zmq.RCVHWM, 1)
        await status_request(client, 100)  # connected (IMMEDIATE queues nothing for a peer not connected yet)
        outcomes = await asyncio.gather(*(client.request(PEER, protocol.PRODUCE, body, 500) for _ in range(sent)),
                                        return_exceptions=True)
        refused = sum(isinstance(outcome, BrokerNotAvailableError) for outcome in outcomes)
        assert all(isinstance(outcome, (BrokerNotAvailableError, RequestTimeoutError)) for outcome in outcomes)
        assert refused >= sent - 2 * QUEUE_MESSAGES_MAX, f"only {refused} of {sent} were refused"

    assert run(test).failure is None
