"""The broker's network server: one ZeroMQ ROUTER socket on the asyncio loop.

Each client or broker connects a DEALER socket; a message is one frame (see
client/protocol.py) behind the ROUTER's identity frame. Requests are read
in order and handed to the request handler at once, so appends happen in
arrival order; a handler that must wait (long-poll fetch, acks=all) returns
an awaitable and its response is sent when it resolves, so many requests
per connection are in flight and matched by correlation id.

A frame that does not decode gets an InvalidRequest error response (with
correlation id -1 when even that could not be read) and the server goes on:
any bytes from a peer, whatever exception decoding them raises (msgspec's
errors, UnicodeDecodeError for a string that is not UTF-8, ...), end in
an error response, never in an exception out of ``serve`` (one
such frame used to end the serve loop and leave the broker deaf).

Bounds: ZeroMQ queues at most ``QUEUE_MESSAGES_MAX`` messages per
connection each way, each at most ``max_request_bytes``. A request that may
wait (``may_wait``) is refused with ThrottlingQuotaExceededError, before
the handler runs, while its connection already has
``ParkingLimits.per_connection`` requests waiting or the server has
``ParkingLimits.total``; requests that are answered at once (metadata,
heartbeats, ...) are always served.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable, Coroutine

import zmq
import zmq.asyncio
from rill.client import protocol
from rill.client.errors import (
    InvalidRequestError,
    RillError,
    ThrottlingQuotaExceededError,
    UnsupportedVersionError,
    code_of,
)
from rill.node.broker_stats import UNKNOWN_API, BrokerStats
from rill.node.network.loop_socket import LoopSocket
from rill.node.network.slow_requests import DEFAULT_SLOW_REQUEST_MS, SlowRequestLog

log = logging.getLogger(__name__)

Handler = Callable[[protocol.Api, object], object | Awaitable[object]]
QUEUE_MESSAGES_MAX = 1_000  # ZeroMQ's SNDHWM and RCVHWM: per connection, each way
ANSWERED_AT_ONCE = frozenset(api.key for api in (
    protocol.API_VERSIONS, protocol.METADATA, protocol.DESCRIBE_CONFIGS, protocol.LIST_OFFSETS,
    protocol.OFFSETS_FOR_LEADER_EPOCH, protocol.BROKER_HEARTBEAT, protocol.NODE_STATUS, protocol.FIND_COORDINATOR,
    protocol.CONSUMER_GROUP_HEARTBEAT, protocol.OFFSET_FETCH, protocol.LIST_GROUPS, protocol.DESCRIBE_GROUP))


@dataclass(frozen=True)
class ParkingLimits:
    """How many requests may wait for their answer at once: from one connection, and in all."""

    per_connection: int
    total: int


def may_wait(api: protocol.Api, body: object) -> bool:
    """Whether the handler may park this request (answer it later): a long-poll fetch, an acks=all
    produce, or anything that waits for Raft or the ISR. An API not known to answer at once counts as
    one that may wait, so a new API is bounded by default."""
    if api.key == protocol.FETCH.key:
        return body.max_wait_ms > 0
    if api.key == protocol.PRODUCE.key:
        return body.acks == -1
    return api.key not in ANSWERED_AT_ONCE


class NetworkServer:
    """Reads requests from a ROUTER socket and writes their responses. Runs on one asyncio loop."""

    def __init__(self, context: zmq.asyncio.Context, bind_address: str, max_request_bytes: int,
                 secure: Callable[[zmq.Socket], None] | None = None, parking: ParkingLimits | None = None,
                 stats: BrokerStats | None = None, slow_request_ms: int = DEFAULT_SLOW_REQUEST_MS):
        """``secure`` sets a security mechanism (CURVE: internal_listener.py) before the socket binds;
        ``parking`` bounds the waiting requests (None: no bound, for a listener that admits only brokers);
        ``stats`` counts requests, their latency and errors by type (the client port's, for /metrics);
        requests answered later than ``slow_request_ms`` are logged (slow_requests.py)."""
        self._socket = context.socket(zmq.ROUTER, socket_class=zmq.Socket)  # plain: a LoopSocket reads it
        self._loop_socket: LoopSocket | None = None
        if secure is not None:
            secure(self._socket)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_request_bytes)
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._socket.setsockopt(zmq.SNDHWM, QUEUE_MESSAGES_MAX)
        self._socket.setsockopt(zmq.RCVHWM, QUEUE_MESSAGES_MAX)
        self._socket.bind(bind_address)
        self._handler: Handler | None = None
        self._pending: set[asyncio.Task] = set()
        self._parking = parking
        self._parked: Counter[bytes] = Counter()  # connection identity -> its requests waiting for an answer
        self._stats = stats if stats is not None else BrokerStats()  # without stats: counted, never read
        self._slow = SlowRequestLog(slow_request_ms, clock_s=time.perf_counter)  # the clock of ``started``

    async def serve(self, handler: Handler) -> None:
        """Serve with ``handler`` until cancelled. Requests that arrived before are served in order.

        The loop reads the socket (loop_socket.py): each message is handled as it is read, and a bug in
        handling one is logged and serving goes on.
        """
        self._handler = handler
        self._loop_socket = LoopSocket(self._socket, self._receive)
        try:
            await asyncio.get_running_loop().create_future()  # serves until cancelled
        finally:
            self._loop_socket.close()

    def _receive(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            identity = frames[0] if frames else b""
            self._reply(identity, protocol.encode_response(-1, None, InvalidRequestError.code,
                                                           f"expected one frame, got {len(frames) - 1}"))
            return
        self._dispatch(frames[0], frames[1])

    def _dispatch(self, identity: bytes, frame: bytes) -> None:
        started = time.perf_counter()
        try:
            envelope = protocol.decode_request_envelope(frame)
        except Exception as error:  # noqa: BLE001 - any bytes: msgspec errors, UnicodeDecodeError, ...
            self._reply(identity, protocol.encode_response(-1, None, InvalidRequestError.code,
                                                           f"malformed request frame: {error}"))
            self._stats.failed(UNKNOWN_API, started, InvalidRequestError())
            return
        correlation_id = envelope.correlation_id
        api_name = getattr(protocol.APIS.get(envelope.api_key), "name", UNKNOWN_API)
        try:
            api, body = self._decode_body(envelope)
            if self._parking is not None and may_wait(api, body):
                self._check_room(identity)
            result = self._handler(api, body)
        except RillError as error:
            self._reply(identity, protocol.encode_response(correlation_id, None, error.code, str(error)))
            self._stats.failed(api_name, started, error)
            return
        except Exception as error:  # a bug: answer, log it, keep serving
            log.exception("request %s failed", envelope.api_key)
            self._reply(identity, protocol.encode_response(correlation_id, None, code_of(error), repr(error)))
            self._stats.failed(api_name, started, error)
            return
        if inspect.isawaitable(result):
            self._park(identity, self._finish(identity, correlation_id, result, api, body, envelope.client_id,
                                              len(frame), started))
            return
        if result is not None:
            self._reply(identity, protocol.encode_response(correlation_id, result))
        self._stats.answered(api_name, started, result)
        self._slow.finished(api, body, envelope.client_id, len(frame), started)

    def _check_room(self, identity: bytes) -> None:
        """Refuse a request that may wait when its connection, or the server, has as many waiting as allowed."""
        if self._parked[identity] >= self._parking.per_connection:
            raise ThrottlingQuotaExceededError(
                f"this connection has {self._parked[identity]} requests waiting for an answer, the most the "
                f"broker allows (max_parked_requests_per_connection); retry once some are answered")
        if len(self._pending) >= self._parking.total:
            raise ThrottlingQuotaExceededError(
                f"the broker has {len(self._pending)} requests waiting for an answer, the most it allows "
                f"(max_parked_requests); retry later")

    def _park(self, identity: bytes, finish: Coroutine) -> None:
        task = asyncio.ensure_future(finish)
        self._pending.add(task)
        self._parked[identity] += 1
        task.add_done_callback(lambda done: self._unpark(identity, done))

    def _unpark(self, identity: bytes, task: asyncio.Task) -> None:
        self._pending.discard(task)
        self._parked[identity] -= 1
        if self._parked[identity] <= 0:
            del self._parked[identity]

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
        except Exception as error:  # noqa: BLE001 - any bytes: msgspec errors, UnicodeDecodeError, ...
            raise InvalidRequestError(f"malformed {api.name} request: {error}") from None

    async def _finish(self, identity: bytes, correlation_id: int, result: Awaitable[object], api: protocol.Api,
                      request: object, client_id: str, request_bytes: int, started: float) -> None:
        """Answer a parked request once its ``result`` is there; count it in the stats (its wait included)
        and log it if slow. One coroutine per parked request: it runs for every acks=all produce and long
        poll."""
        try:
            body = await result
        except RillError as error:
            self._stats.failed(api.name, started, error)
            self._reply(identity, protocol.encode_response(correlation_id, None, error.code, str(error)))
            return
        except Exception as error:
            self._stats.failed(api.name, started, error)
            log.exception("request %s failed", correlation_id)
            self._reply(identity, protocol.encode_response(correlation_id, None, code_of(error), repr(error)))
            return
        self._stats.answered(api.name, started, body)
        self._slow.finished(api, request, client_id, request_bytes, started)
        if body is not None:
            self._reply(identity, protocol.encode_response(correlation_id, body))

    def _reply(self, identity: bytes, frame: bytes) -> None:
        if self._socket.closed:
            return  # a long poll that ended after shutdown began
        try:
            self._loop_socket.send_multipart((identity, frame), copy=False)  # answers exist only once serving
        except zmq.Again:
            log.warning("dropped a response: the peer's queue is full")
        except zmq.ZMQError as error:
            log.warning("dropped a response: %s", error)

    @property
    def parked_requests(self) -> int:
        """Requests waiting for their answer now (long-poll fetches, acks=all produces, ...)."""
        return len(self._pending)

    def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        self._socket.close(linger=0)
