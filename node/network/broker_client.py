"""Requests from this broker to other brokers (and to the controller) over ZeroMQ, on the asyncio loop.

One DEALER socket per peer, with a reader task that matches responses to
waiting futures by correlation id, so followers' fetches, ISR changes and
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
from rill.node.network.connection_monitor import ConnectionMonitor

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
    that does not decode, whatever the bytes, is dropped or fails its request: the reader of a
    peer's socket (started through ``spawn``, which supervises it) never dies of it.
    """

    def __init__(self, context: zmq.asyncio.Context, node_id: int, addresses: dict[int, str],
                 secure: Callable[[zmq.Socket], None], *, max_response_bytes: int, spawn: Spawn):
        self._context = context
        self._max_response_bytes = max_response_bytes
        self._spawn = spawn
        self._secure = secure
        self._client_id = f"broker-{node_id}"
        self._addresses = addresses
        self._sockets: dict[int, zmq.asyncio.Socket] = {}
        self._readers: dict[int, asyncio.Task] = {}
        self._monitors: dict[int, ConnectionMonitor] = {}
        self._waiting: dict[int, tuple[protocol.Api, asyncio.Future]] = {}
        self._correlation_ids = itertools.count(1)
        self._unreachable_since: dict[int, float] = {}  # node id -> first failed send since the last one sent

    def _socket(self, node_id: int) -> zmq.asyncio.Socket:
        socket = self._sockets.get(node_id)
        if socket is None:
            address = self._addresses.get(node_id)
            if address is None:
                raise BrokerNotAvailableError(f"no address known for broker {node_id}")
            socket = self._context.socket(zmq.DEALER)
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
            self._sockets[node_id] = socket
            self._readers[node_id] = self._spawn(f"reader of broker {node_id}", self._read(socket))
        return socket

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
            await socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self._renew_if_abandoned(node_id)
            raise BrokerNotAvailableError(f"broker {node_id} is not connected") from None
        self._unreachable_since.pop(node_id, None)
        future = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = (api, future)
        try:
            return await asyncio.wait_for(future, timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"{api.name} to broker {node_id} timed out") from None
        finally:
            self._waiting.pop(correlation_id, None)

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
        self._readers.pop(node_id).cancel()
        self._monitors.pop(node_id).close()
        self._sockets.pop(node_id).close(linger=0)

    async def _read(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            frame = await socket.recv()
            try:
                envelope = protocol.decode_response_envelope(frame)
            except Exception as error:  # noqa: BLE001 - any bytes: msgspec errors, UnicodeDecodeError, ...
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
            except Exception as error:  # noqa: BLE001 - any bytes: msgspec errors, UnicodeDecodeError, ...
                future.set_exception(error_for_code(-1, f"malformed {api.name} response: {error}"))

    def close(self) -> None:
        for reader in self._readers.values():
            reader.cancel()
        for monitor in self._monitors.values():
            monitor.close()
        self._monitors.clear()
        for socket in self._sockets.values():
            socket.close(linger=0)
        self._sockets.clear()
