"""Requests from this broker to other brokers (and to the controller) over ZeroMQ, on the asyncio loop.

One DEALER socket per peer, with a reader task that matches responses to
waiting futures by correlation id, so followers' fetches, ISR changes and
heartbeats share a connection and many are in flight at once. ``IMMEDIATE``
makes a request to a peer that is not connected fail at once with
BrokerNotAvailableError instead of queueing. Not thread-safe: the loop's
thread only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import msgspec
import zmq
import zmq.asyncio
from rill.client import protocol
from rill.client.errors import (
    BrokerNotAvailableError,
    RequestTimeoutError,
    error_for_code,
)

log = logging.getLogger(__name__)


class BrokerClient:
    """Sends requests to brokers by node id; ``addresses`` maps node id to host:port."""

    def __init__(self, context: zmq.asyncio.Context, node_id: int, addresses: dict[int, str]):
        self._context = context
        self._client_id = f"broker-{node_id}"
        self._addresses = addresses
        self._sockets: dict[int, zmq.asyncio.Socket] = {}
        self._readers: dict[int, asyncio.Task] = {}
        self._waiting: dict[int, tuple[protocol.Api, asyncio.Future]] = {}
        self._correlation_ids = itertools.count(1)

    def _socket(self, node_id: int) -> zmq.asyncio.Socket:
        socket = self._sockets.get(node_id)
        if socket is None:
            address = self._addresses.get(node_id)
            if address is None:
                raise BrokerNotAvailableError(f"no address known for broker {node_id}")
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.setsockopt(zmq.RECONNECT_IVL, 50)
            socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
            socket.connect(f"tcp://{address}")
            self._sockets[node_id] = socket
            self._readers[node_id] = asyncio.ensure_future(self._read(socket))
        return socket

    async def request(self, node_id: int, api: protocol.Api, body: Any, timeout_ms: int) -> Any:
        """Send one request and wait for its response body; raises the typed error it carries."""
        correlation_id = next(self._correlation_ids)
        frame = protocol.encode_request(api, correlation_id, body, self._client_id)
        socket = self._socket(node_id)
        try:
            await socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            raise BrokerNotAvailableError(f"broker {node_id} is not connected") from None
        future = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = (api, future)
        try:
            return await asyncio.wait_for(future, timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"{api.name} to broker {node_id} timed out") from None
        finally:
            self._waiting.pop(correlation_id, None)

    async def _read(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            frame = await socket.recv()
            try:
                envelope = protocol.decode_response_envelope(frame)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                log.warning("dropped a malformed response from a broker: %s", error)
                continue
            entry = self._waiting.get(envelope.correlation_id)
            if entry is None or entry[1].done():
                continue
            api, future = entry
            if envelope.error_code:
                future.set_exception(error_for_code(envelope.error_code, envelope.error_message))
                continue
            try:
                future.set_result(protocol.decode_response_body(api.key, envelope.body))
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                future.set_exception(error_for_code(-1, f"malformed {api.name} response: {error}"))

    def close(self) -> None:
        for reader in self._readers.values():
            reader.cancel()
        for socket in self._sockets.values():
            socket.close(linger=0)
        self._sockets.clear()
