"""The fuzz oracle at the wire: what answer a frame may get, and a bare socket to get it.

A request that decodes must be answered with its own correlation id; one
that does not, with correlation id -1. An answer is either an error (a
wire error code and a nil body) or a success whose body decodes as that
API's response struct. Only two requests may stay unanswered within a
case's wait: a produce with acks=0 (the protocol never answers it) and a
fetch allowed to long-poll for longer than ``LONG_POLL_MS_MAX``; and a
frame over the broker's ``max_request_bytes`` may cost the connection. The
client port refuses what only brokers may ask (request_handler.py's
BROKER_APIS, and a fetch as a replica): those must get an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import zmq
from rill.client import protocol
from rill.client.errors import error_for_code
from rill.node.network.request_handler import BROKER_APIS

LONG_POLL_MS_MAX = 100  # a fetch allowed to wait longer than this may stay unanswered within a case
NIL = b"\xc0"


@dataclass(frozen=True)
class Expected:
    """What a broker may answer to one message."""

    correlation_id: int  # the id the answer must carry: -1 when the frame did not decode
    api: protocol.Api | None  # whose response struct a success must decode as; None: only an error fits
    may_stay_silent: bool  # acks=0 produce, or a fetch that may long-poll past the case's wait
    broker_only: bool = False  # a request only brokers may make: the client port must refuse it


@dataclass(frozen=True)
class Answer:
    """A right answer, decoded: a wire error code (0: success) and, on success, the response body."""

    error_code: int
    body: object | None


def expected_answer(frames: Sequence[bytes], max_request_bytes: int) -> Expected:
    """Decode the message as the broker should, and say which answers are right.

    Decoding here catches every exception: whatever the broker's decoder
    raises on a frame, the only right answer to it is an error.
    """
    if max(map(len, frames)) > max_request_bytes:
        return Expected(-1, None, True)  # ZeroMQ drops the connection of a peer that sends one
    if len(frames) != 1:
        return Expected(-1, None, False)
    try:
        envelope = protocol.decode_request_envelope(frames[0])
    except Exception:  # noqa: BLE001 - any decoding failure means: error answer, correlation id -1
        return Expected(-1, None, False)
    api = protocol.APIS.get(envelope.api_key)
    if api is None or not api.min_version <= envelope.api_version <= api.max_version:
        return Expected(envelope.correlation_id, None, False)
    try:
        body = protocol.decode_request_body(api.key, envelope.body)
    except Exception:  # noqa: BLE001 - a body that does not decode gets an error
        return Expected(envelope.correlation_id, None, False)
    return Expected(envelope.correlation_id, api, _may_stay_silent(body), _broker_only(api, body))


def _may_stay_silent(body: object) -> bool:
    if isinstance(body, protocol.ProduceRequest):
        return body.acks == 0
    if isinstance(body, protocol.FetchRequest):
        return body.max_wait_ms > LONG_POLL_MS_MAX
    return False


def _broker_only(api: protocol.Api, body: object) -> bool:
    return api.key in BROKER_APIS or (isinstance(body, protocol.FetchRequest) and body.replica_id >= 0)


def check_answer(expected: Expected, frames: list[bytes]) -> Answer:
    """Assert that ``frames`` are a right answer to a message ``expected`` describes, and decode it."""
    assert len(frames) == 1, f"an answer is one frame, got {len(frames)}"
    envelope = protocol.decode_response_envelope(frames[0])
    assert envelope.correlation_id == expected.correlation_id, (
        f"answer carries correlation id {envelope.correlation_id}, expected {expected.correlation_id}")
    if envelope.error_code:
        assert bytes(envelope.body) == NIL, "an error answer has a nil body"
        return Answer(envelope.error_code, None)
    assert expected.api is not None, "a request that should not decode was answered with success"
    assert not expected.broker_only, f"the client port served the broker-only request {expected.api.name}"
    return Answer(0, protocol.decode_response_body(expected.api.key, envelope.body))


class WireProbe:
    """A bare DEALER socket to one broker, for frames the client library would never send.

    Not thread-safe. ``reconnect`` drops the socket, and with it any answer
    still on the way (a long poll), so later answers match later requests.
    """

    def __init__(self, context: zmq.Context, address: str):
        self._context = context
        self._endpoint = f"tcp://{address}"
        self._socket = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._endpoint)
        return sock

    def reconnect(self) -> None:
        self._socket.close(linger=0)
        self._socket = self._connect()

    def send(self, frames: Sequence[bytes]) -> None:
        self._socket.send_multipart(list(frames), copy=True)

    def receive(self, timeout_s: float) -> list[bytes] | None:
        """The next message, or None if none came within ``timeout_s``."""
        if not self._socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None
        return self._socket.recv_multipart()

    def request(self, api: protocol.Api, body: object, timeout_s: float, correlation_id: int = 1) -> object:
        """A well-formed request; returns its response body, raises the RillError it answers."""
        self.send([protocol.encode_request(api, correlation_id, body, client_id="fuzz-check")])
        frames = self.receive(timeout_s)
        assert frames is not None, f"no answer to {api.name} within {timeout_s} s"
        envelope = protocol.decode_response_envelope(frames[0])
        assert envelope.correlation_id == correlation_id, "answer to another request"
        if envelope.error_code:
            raise error_for_code(envelope.error_code, envelope.error_message)
        return protocol.decode_response_body(api.key, envelope.body)

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> WireProbe:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
