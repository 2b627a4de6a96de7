"""LoopSocket: every message is handed over (more than one drain's worth, some sent before it started,
with answers sent in between), a handler's exception stops nothing, and close is final."""

from __future__ import annotations

import asyncio

import zmq

from rill.node.network.loop_socket import DRAIN_MAX, LoopSocket

DEADLINE_S = 20.0


def _pair(context: zmq.Context) -> tuple[zmq.Socket, zmq.Socket]:
    server = context.socket(zmq.ROUTER)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = context.socket(zmq.DEALER)
    client.connect(f"tcp://127.0.0.1:{port}")
    return server, client


def test_echoes_every_message_including_those_sent_before_it_started():
    count = 3 * DRAIN_MAX + 7
    context = zmq.Context()
    server, client = _pair(context)
    early = 50
    for number in range(early):  # queued before the loop watches the socket
        client.send(b"%d" % number)

    async def scenario() -> list[bytes]:
        loop_socket = LoopSocket(server, lambda frames: loop_socket.send_multipart(frames))
        for number in range(early, count):
            client.send(b"%d" % number)
        answers: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while len(answers) < count and asyncio.get_running_loop().time() < deadline:
            while client.poll(0):
                answers.append(client.recv())
            await asyncio.sleep(0.001)
        loop_socket.close()
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        client.close(linger=0)
        context.term()
    assert answers == [b"%d" % number for number in range(count)]


def test_a_handler_that_raises_does_not_stop_the_socket(caplog):
    context = zmq.Context()
    server, client = _pair(context)

    def handle(frames: list[bytes]) -> None:
        if frames[1] == b"bad":
            raise ValueError("a bug in one message's handling")
        loop_socket.send_multipart(frames)

    async def scenario() -> bytes | None:
        nonlocal loop_socket
        loop_socket = LoopSocket(server, handle)
        client.send(b"bad")
        client.send(b"good")
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while asyncio.get_running_loop().time() < deadline:
            if client.poll(0):
                return client.recv()
            await asyncio.sleep(0.001)
        return None

    loop_socket: LoopSocket | None = None
    try:
        answer = asyncio.run(scenario())
        loop_socket.close()
        loop_socket.close()  # twice is fine
        assert loop_socket.closed
    finally:
        client.close(linger=0)
        context.term()
    assert answer == b"good"
    assert "handling a message failed" in caplog.text
