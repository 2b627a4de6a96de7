"""Requests from this broker to other brokers (and to the controller) over ZeroMQ, on the asyncio loop.

One DEALER socket per peer, read by the loop (loop_socket.py), which
matches responses to waiting futures by correlation id, so followers' fetches, ISR changes and
heartbeats share a connection and many are in flight at once. ``IMMEDIATE``
makes a request to a peer that is not connected fail at once with
BrokerNotAvailableError instead of queueing. The addresses are the peers'
inter-broker listeners, and ``secure`` gives each socket the cluster's CURVE
client keys (internal_listener.py): a broker that cannot complete that
handshake is not connected. Each socket has a ConnectionMonitor
(connection_monitor.py): ``refused_since`` tells the controller that a peer's
process is gone. Not thread-safe: the loop's thread only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any, Callable, Coroutine

import zmq
import zmq.asyncio
from rill.client import protocol
from rill.client.errors import (
    BrokerNotAvailableError,
    RequestTimeoutError,
    error_for_code,
)
from rill.node.bounded_wait import wait_at_most
from rill.node.network.connection_monitor import ConnectionMonitor
from rill.node.network.loop_socket import LoopSocket

log = logging.getLogger(__name__)

QUEUE_MESSAGES_MAX = 1_000  # ZeroMQ's SNDHWM and RCVHWM on each peer's socket
ABANDONED_AFTER_S = 2.0  # a peer unreachable this long, though its address does not refuse: libzmq gave up
Spawn = Callable[[str, Coroutine[Any, Any, object]], asyncio.Task]


class BrokerClient:
    """Sends requests to brokers by node id; ``addresses`` maps node id to host:port.

    Bounds: per peer, at most QUEUE_MESSAGES_MAX messages wait to be sent or read, and a peer that
    sends a message over ``max_response_bytes`` is disconnected by ZeroMQ (MAXMSGSIZE). libzmq treats
    that as a protocol error and never reconnects such a socket, so a peer that stays unreachable for
    ABANDONED_AFTER_S while its address does not refuse connections gets a new socket. A response
    that does not decode, whatever the bytes, is dropped or fails its request: reading a peer's
    socket never stops because of it. ``spawn`` starts (and supervises) the connection monitors.
    """

    def __init__(self, context: zmq.asyncio.Context, node_id: int, addresses: dict[int, str],
                 secure: Callable[[zmq.Socket], None], *, max_response_bytes: int, spawn: Spawn):
        self._context = context
        self._max_response_bytes = max_response_bytes
        self._spawn = spawn
        self._secure = secure
        self._client_id = f"broker-{node_id}"
        self._addresses = addresses
        self._sockets: dict[int, LoopSocket] = {}
        self._monitors: dict[int, ConnectionMonitor] = {}
        self._waiting: dict[int, tuple[protocol.Api, asyncio.Future]] = {}
        self._correlation_ids = itertools.count(1)
        self._unreachable_since: dict[int, float] = {}  # node id -> first failed send since the last one sent

    def _socket(self, node_id: int) -> LoopSocket:
        loop_socket = self._sockets.get(node_id)
        if loop_socket is None:
            address = self._addresses.get(node_id)
            if address is None:
                raise BrokerNotAvailableError(f"no address known for broker {node_id}")
            socket = self._context.socket(zmq.DEALER, socket_class=zmq.Socket)  # plain: a LoopSocket reads it
            self._secure(socket)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.setsockopt(zmq.RECONNECT_IVL, 50)
            socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
            socket.setsockopt(zmq.SNDHWM, QUEUE_MESSAGES_MAX)
            socket.setsockopt(zmq.RCVHWM, QUEUE_MESSAGES_MAX)
            socket.setsockopt(zmq.MAXMSGSIZE, self._max_response_bytes)
            self._monitors[node_id] = ConnectionMonitor(socket, f"broker {node_id} at {address}", self._spawn)
            socket.connect(f"tcp://{address}")
            loop_socket = self._sockets[node_id] = LoopSocket(socket, self._on_response)
        return loop_socket

    def connect(self, node_ids: list[int]) -> None:
        """Connect to these brokers now rather than at the first request, so that their connections
        are watched from the start."""
        for node_id in node_ids:
            self._socket(node_id)

    def refused_since(self, node_id: int) -> float | None:
        """Since when (``time.monotonic``) connecting to the broker fails: the first failed attempt
        since it was last connected; None while connected, or if it was never tried."""
        monitor = self._monitors.get(node_id)
        return None if monitor is None else monitor.refused_since

    async def request(self, node_id: int, api: protocol.Api, body: Any, timeout_ms: int) -> Any:
        """Send one request and wait for its response body; raises the typed error it carries."""
        correlation_id = next(self._correlation_ids)
        frame = protocol.encode_request(api, correlation_id, body, self._client_id)
        socket = self._socket(node_id)
        try:
            socket.send(frame)
        except zmq.Again:
            self._renew_if_abandoned(node_id)
            raise BrokerNotAvailableError(f"broker {node_id} is not connected") from None
        self._unreachable_since.pop(node_id, None)
        future = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = (api, future)
        try:
            if not await wait_at_most(future, timeout_ms / 1000):
                raise RequestTimeoutError(f"{api.name} to broker {node_id} timed out")
        finally:
            self._waiting.pop(correlation_id, None)
        return future.result()

    def _renew_if_abandoned(self, node_id: int) -> None:
        """Replace the socket of a peer that has been unreachable for ABANDONED_AFTER_S although nothing
        refuses its address: libzmq stopped reconnecting it (a protocol error, such as a message over
        MAXMSGSIZE). A peer that is down refuses connections, and its socket keeps retrying by itself."""
        now = time.monotonic()
        since = self._unreachable_since.setdefault(node_id, now)
        if now - since < ABANDONED_AFTER_S or self.refused_since(node_id) is not None:
            return
        log.warning("broker %d unreachable for %.0f s though its address accepts connections: "
                    "opening a new connection", node_id, now - since)
        del self._unreachable_since[node_id]
        self._monitors.pop(node_id).close()
        self._sockets.pop(node_id).close()

    def _on_response(self, frames: list[bytes]) -> None:
        """Complete the request a response answers; one that does not decode is dropped or fails it."""
        if len(frames) != 1:
            log.warning("dropped a response from a broker with %d frames, not 1", len(frames))
            return
        try:
            envelope = protocol.decode_response_envelope(frames[0])
        except Exception as error:  # noqa: BLE001 - any bytes: msgspec errors, UnicodeDecodeError, ...
            log.warning("dropped a malformed response from a broker: %s", error)
            return
        entry = self._waiting.get(envelope.correlation_id)
        if entry is None or entry[1].done():
            return
        api, future = entry
        if envelope.error_code:
            future.set_exception(error_for_code(envelope.error_code, envelope.error_message))
            return
        try:
            future.set_result(protocol.decode_response_body(api.key, envelope.body))
        except Exception as error:  # noqa: BLE001 - any bytes: msgspec errors, UnicodeDecodeError, ...
            future.set_exception(error_for_code(-1, f"malformed {api.name} response: {error}"))

    def close(self) -> None:
        for monitor in self._monitors.values():
            monitor.close()
        self._monitors.clear()
        for loop_socket in self._sockets.values():
            loop_socket.close()
        self._sockets.clear()
