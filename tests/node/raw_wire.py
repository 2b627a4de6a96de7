"""A bare ZeroMQ connection to a broker, for tests that send what the client library never would: garbage,
floods of requests that park, requests with duplicate partitions. Answers are collected by correlation id."""

from __future__ import annotations

import itertools
import time
from typing import Any

import zmq
from rill.client import protocol
from rill.client.errors import error_for_code


class RawConnection:
    """One DEALER socket to ``address``; not thread-safe. Use as a context manager."""

    def __init__(self, context: zmq.Context, address: str, client_id: str = "raw-test"):
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 0)  # a flood is queued whole rather than blocking the test
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.connect(f"tcp://{address}")
        self._client_id = client_id
        self._correlation_ids = itertools.count(1)
        self.received: list[protocol.ResponseEnvelope] = []  # every answer, in arrival order
        self.answers: dict[int, protocol.ResponseEnvelope] = {}  # by correlation id (the latest, for a reused id)

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def send(self, api: protocol.Api, body: Any) -> int:
        """Send one request; its correlation id."""
        correlation_id = next(self._correlation_ids)
        self._socket.send(protocol.encode_request(api, correlation_id, body, self._client_id))
        return correlation_id

    def send_frames(self, frames: list[bytes]) -> None:
        self._socket.send_multipart(frames)

    def collect(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` answers in all have arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._socket.poll(remaining_ms):
                raise AssertionError(f"{len(self.received)} answers of {count} arrived within {timeout_s} s")
            self._take(self._socket.recv())

    def collect_ready(self) -> None:
        """Take every answer that has arrived already, without waiting."""
        while self._socket.poll(0):
            self._take(self._socket.recv())

    def _take(self, frame: bytes) -> None:
        envelope = protocol.decode_response_envelope(frame)
        self.received.append(envelope)
        self.answers[envelope.correlation_id] = envelope

    def request(self, api: protocol.Api, body: Any, timeout_s: float = 10.0) -> Any:
        """Send one request and wait for its answer: the response body, or the typed error it carries."""
        correlation_id = self.send(api, body)
        deadline = time.monotonic() + timeout_s
        while correlation_id not in self.answers:
            self.collect(len(self.received) + 1, max(0.0, deadline - time.monotonic()))
        envelope = self.answers.pop(correlation_id)
        if envelope.error_code:
            raise error_for_code(envelope.error_code, envelope.error_message)
        return protocol.decode_response_body(api.key, envelope.body)

    def close(self) -> None:
        self._socket.close(linger=0)

