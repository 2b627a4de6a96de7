"""The broker's network server: one ZeroMQ ROUTER socket on the asyncio loop.

Each client or broker connects a DEALER socket; a message is one frame (see
client/protocol.py) behind the ROUTER's identity frame. Requests are read
in order and handed to the request handler at once, so appends happen in
arrival order; a handler that must wait (long-poll fetch, acks=all) returns
an awaitable and its response is sent when it resolves, so many requests
per connection are in flight and matched by correlation id.

A frame that does not decode gets an InvalidRequest error response (with
correlation id -1 when even that could not be read) and the server goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable

import msgspec
import zmq
import zmq.asyncio
from rill.client import protocol
from rill.client.errors import (
    InvalidRequestError,
    RillError,
    UnsupportedVersionError,
    code_of,
)

log = logging.getLogger(__name__)

Handler = Callable[[protocol.Api, object], object | Awaitable[object]]


class NetworkServer:
    """Reads requests from a ROUTER socket and writes their responses. Runs on one asyncio loop."""

    def __init__(self, context: zmq.asyncio.Context, bind_address: str, max_request_bytes: int):
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_request_bytes)
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._socket.setsockopt(zmq.SNDHWM, 100_000)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        self._socket.bind(bind_address)
        self._handler: Handler | None = None
        self._pending: set[asyncio.Task] = set()

    async def serve(self, handler: Handler) -> None:
        """Serve with ``handler`` until cancelled. Requests that arrived before are served in order."""
        self._handler = handler
        while True:
            frames = await self._socket.recv_multipart(copy=True)
            if len(frames) != 2:
                identity = frames[0] if frames else b""
                self._reply(identity, protocol.encode_response(-1, None, InvalidRequestError.code,
                                                               f"expected one frame, got {len(frames) - 1}"))
                continue
            self._dispatch(frames[0], frames[1])

    def _dispatch(self, identity: bytes, frame: bytes) -> None:
        try:
            envelope = protocol.decode_request_envelope(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reply(identity, protocol.encode_response(-1, None, InvalidRequestError.code,
                                                           f"malformed request frame: {error}"))
            return
        correlation_id = envelope.correlation_id
        try:
            api, body = self._decode_body(envelope)
            result = self._handler(api, body)
        except RillError as error:
            self._reply(identity, protocol.encode_response(correlation_id, None, error.code, str(error)))
            return
        except Exception as error:  # a bug: answer, log it, keep serving
            log.exception("request %s failed", envelope.api_key)
            self._reply(identity, protocol.encode_response(correlation_id, None, code_of(error), repr(error)))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(identity, correlation_id, result))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        elif result is not None:
            self._reply(identity, protocol.encode_response(correlation_id, result))

    @staticmethod
    def _decode_body(envelope: protocol.RequestEnvelope) -> tuple[protocol.Api, object]:
        api = protocol.APIS.get(envelope.api_key)
        if api is None:
            raise UnsupportedVersionError(f"unknown request type {envelope.api_key}")
        if not api.min_version <= envelope.api_version <= api.max_version:
            raise UnsupportedVersionError(
                f"{api.name} version {envelope.api_version} is not in {api.min_version}..{api.max_version}"
            )
        try:
            return api, protocol.decode_request_body(api.key, envelope.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise InvalidRequestError(f"malformed {api.name} request: {error}") from None

    async def _finish(self, identity: bytes, correlation_id: int, result: Awaitable[object]) -> None:
        try:
            body = await result
        except RillError as error:
            self._reply(identity, protocol.encode_response(correlation_id, None, error.code, str(error)))
            return
        except Exception as error:
            log.exception("request %s failed", correlation_id)
            self._reply(identity, protocol.encode_response(correlation_id, None, code_of(error), repr(error)))
            return
        if body is not None:
            self._reply(identity, protocol.encode_response(correlation_id, body))

    def _reply(self, identity: bytes, frame: bytes) -> None:
        if self._socket.closed:
            return  # a long poll that ended after shutdown began
        try:
            self._socket.send_multipart((identity, frame), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("dropped a response: the peer's queue is full")

    def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        self._socket.close(linger=0)
