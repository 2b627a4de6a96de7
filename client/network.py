"""Requests to brokers over ZeroMQ: many in flight per broker, matched by correlation id.

One DEALER socket per broker address. ``IMMEDIATE`` keeps requests from
queueing for a broker that is not connected, so a dead broker shows up as
BrokerNotAvailableError at once or as RequestTimeoutError after
``timeout_ms``, never as a silent wait. A request that gets no response
(produce with acks=0) stays in flight until ZeroMQ has handed its bytes to
the connection, so a broker that stops reading cannot make frames pile up
in ZeroMQ's queue. Not thread-safe: each thread that talks to brokers owns
its own NetworkClient (the zmq Context is shared).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import zmq
from rill.client import protocol
from rill.client.errors import (
    BrokerNotAvailableError,
    InvalidConfigError,
    RequestTimeoutError,
    RillError,
    error_for_code,
)
from rill.client.zmq_flavor import new_poller
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

Callback = Callable[[Any, RillError | None], None]
MAX_RESPONSE_BYTES = 1 << 30
CONNECT_TIMEOUT_MS = 1_000
FAST_CONNECT_TIMEOUT_MS = 250  # for requests any of several brokers can answer: skip a slow one
MAX_ATTEMPT_MS = 5_000  # one attempt of a request retried until a deadline


class _InFlight:
    """A request awaiting its response, or (``tracker`` set) a request without one awaiting its hand-over."""

    __slots__ = ("address", "api", "callback", "deadline", "tracker")

    def __init__(self, api: protocol.Api, address: str, callback: Callback, deadline: float,
                 tracker: zmq.MessageTracker | None = None):
        self.api = api
        self.address = address
        self.callback = callback
        self.deadline = deadline
        self.tracker = tracker


def attempt_ms(deadline: float) -> int:
    """The timeout of one attempt: what is left before the (monotonic) deadline, at most MAX_ATTEMPT_MS."""
    return max(1, min(MAX_ATTEMPT_MS, int((deadline - time.monotonic()) * 1000)))


def parse_bootstrap(bootstrap: str) -> list[str]:
    """'host:port[,host:port...]' as a list of 'host:port'; raises InvalidConfigError when malformed."""
    if not isinstance(bootstrap, str):
        raise InvalidConfigError(f"bootstrap must be a str of host:port[,host:port...], got {bootstrap!r:.80}")
    addresses = [part.strip() for part in bootstrap.split(",") if part.strip()]
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise InvalidConfigError(f"bootstrap address {address!r} is not host:port")
    if not addresses:
        raise InvalidConfigError("bootstrap needs at least one host:port")
    return addresses


class NetworkClient:
    """Sends requests and dispatches responses to callbacks; ``poll`` drives everything."""

    def __init__(self, context: zmq.Context, client_id: str = ""):
        self._context = context
        self._client_id = client_id
        self._sockets: dict[str, zmq.Socket] = {}
        self._addresses: dict[zmq.Socket, str] = {}
        self._monitors: dict[zmq.Socket, str] = {}
        self._poller = new_poller()
        self._in_flight: dict[int, _InFlight] = {}
        self._in_flight_by_address: dict[str, int] = {}
        self._handing_over: list[int] = []  # correlation ids of in-flight requests that get no response
        self._correlation_ids = itertools.count(1)

    def register(self, socket: zmq.Socket) -> None:
        """Also wake ``poll`` when this extra socket (e.g. a producer's wake-up pipe) is readable."""
        self._poller.register(socket, zmq.POLLIN)

    def _socket(self, address: str) -> zmq.Socket:
        socket = self._sockets.get(address)
        if socket is None:
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.setsockopt(zmq.RECONNECT_IVL, 50)
            socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_RESPONSE_BYTES)
            socket.setsockopt(zmq.SNDHWM, 10_000)
            socket.setsockopt(zmq.RCVHWM, 10_000)
            monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            socket.connect(f"tcp://{address}")
            self._sockets[address] = socket
            self._addresses[socket] = address
            self._monitors[monitor] = address
            self._poller.register(socket, zmq.POLLIN)
            self._poller.register(monitor, zmq.POLLIN)
        return socket

    def in_flight(self, address: str) -> int:
        return self._in_flight_by_address.get(address, 0)

    @property
    def pending(self) -> int:
        return len(self._in_flight)

    @property
    def handing_over(self) -> int:
        """Requests without a response that ZeroMQ has not yet handed to their connection."""
        return len(self._handing_over)

    def send(self, address: str, api: protocol.Api, body: Any, callback: Callback, timeout_ms: int) -> bool:
        """Queue a request; False (and nothing queued) if the broker is not connected yet."""
        correlation_id = next(self._correlation_ids)
        frame = protocol.encode_request(api, correlation_id, body, self._client_id)
        try:
            self._socket(address).send(frame, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        self._add_in_flight(correlation_id, _InFlight(api, address, callback, time.monotonic() + timeout_ms / 1000))
        return True

    def send_only(self, address: str, api: protocol.Api, body: Any, callback: Callback, timeout_ms: int) -> bool:
        """Send a request that gets no response (produce with acks=0); False (nothing queued) if not connected.

        It stays in flight until ZeroMQ has handed its bytes to the connection, then ``callback(None,
        None)`` runs: so the bytes waiting inside ZeroMQ are bounded by the caller's in-flight limit,
        even while the broker reads nothing. Still queued after ``timeout_ms``, the request fails with
        RequestTimeoutError and the connection is dropped, which discards what it had queued.
        """
        correlation_id = next(self._correlation_ids)
        # Zero-copy and tracked: ZeroMQ releases the frame (and sets its tracker) once it took the bytes.
        # No reference to the Frame may outlive this call, or ZeroMQ would never release it.
        frame = zmq.Frame(protocol.encode_request(api, correlation_id, body, self._client_id), track=True, copy=False)
        try:
            tracker = self._socket(address).send(frame, zmq.NOBLOCK, copy=False, track=True)
        except zmq.Again:
            return False
        finally:
            del frame
        deadline = time.monotonic() + timeout_ms / 1000
        self._add_in_flight(correlation_id, _InFlight(api, address, callback, deadline, tracker))
        self._handing_over.append(correlation_id)
        return True

    def _add_in_flight(self, correlation_id: int, entry: _InFlight) -> None:
        self._in_flight[correlation_id] = entry
        self._in_flight_by_address[entry.address] = self._in_flight_by_address.get(entry.address, 0) + 1

    def poll(self, timeout_ms: float) -> list[zmq.Socket]:
        """Wait up to timeout_ms, dispatch every response that arrived, expire late requests.

        Returns the extra (registered) sockets that are readable.
        """
        ready = dict(self._poller.poll(max(0, int(timeout_ms))))
        extra = []
        for socket in ready:
            if socket.closed:
                continue  # dropped by _disconnect while handling an earlier socket
            if socket in self._monitors:
                self._on_monitor_event(socket)
                continue
            address = self._addresses.get(socket)
            if address is None:
                extra.append(socket)
                continue
            for _ in range(10_000):
                try:
                    frame = socket.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._dispatch(frame.buffer)
        if self._handing_over:
            self._complete_handed_over()
        self._expire(time.monotonic())
        return extra

    def _complete_handed_over(self) -> None:
        """Requests without a response are done once ZeroMQ has handed their bytes to the connection."""
        done = [cid for cid in self._handing_over if cid not in self._in_flight or self._in_flight[cid].tracker.done]
        if not done:
            return
        finished = set(done)
        self._handing_over = [cid for cid in self._handing_over if cid not in finished]
        for correlation_id in done:
            entry = self._finish(correlation_id)
            if entry is not None:
                entry.callback(None, None)

    def _on_monitor_event(self, monitor: zmq.Socket) -> None:
        """A broker connection dropped: its requests will get no answer, so fail them now (retriable)."""
        for _ in range(1_000):
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            if event["event"] == zmq.EVENT_DISCONNECTED:
                address = self._monitors[monitor]
                if self._hands_over_to(address):
                    self._disconnect(address)  # the frames it queued must not outlive their failed requests
                    return
                self._fail_address(address)

    def _hands_over_to(self, address: str) -> bool:
        return any(self._in_flight[cid].address == address for cid in self._handing_over if cid in self._in_flight)

    def _fail_address(self, address: str) -> None:
        lost = [cid for cid, entry in self._in_flight.items() if entry.address == address]
        for correlation_id in lost:
            entry = self._finish(correlation_id)
            entry.callback(None, BrokerNotAvailableError(f"connection to {address} lost during {entry.api.name}"))

    def _finish(self, correlation_id: int) -> _InFlight | None:
        entry = self._in_flight.pop(correlation_id, None)
        if entry is not None:
            self._in_flight_by_address[entry.address] -= 1
        return entry

    def _dispatch(self, frame: memoryview) -> None:
        """Decode a response straight from ZeroMQ's buffer (no copy of a fetch's megabytes first): decoding
        copies what the body holds (records are ``bytes``), so nothing refers to the frame afterwards."""
        try:
            envelope = protocol.decode_response_envelope(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("dropped a malformed response: %s", error)
            return
        entry = self._finish(envelope.correlation_id)
        if entry is None:
            return  # expired already, or a broker's reply to a frame it could not read
        if envelope.error_code:
            entry.callback(None, error_for_code(envelope.error_code, envelope.error_message))
            return
        try:
            body = protocol.decode_response_body(entry.api.key, envelope.body)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as error:
            entry.callback(None, error_for_code(-1, f"malformed {entry.api.name} response: {error}"))
            return
        entry.callback(body, None)

    def _expire(self, now: float) -> None:
        late = [cid for cid, entry in self._in_flight.items() if entry.deadline <= now]
        stuck = set()
        for correlation_id in late:
            entry = self._finish(correlation_id)
            if entry is None:
                continue  # failed already, with its connection, by an earlier callback
            if entry.tracker is not None:
                stuck.add(entry.address)
            entry.callback(None, RequestTimeoutError(f"{entry.api.name} to {entry.address} timed out"))
        for address in stuck:
            self._disconnect(address)

    def _disconnect(self, address: str) -> None:
        """Drop the connection (and every frame queued for it); its other requests fail now (retriable)."""
        socket = self._sockets.pop(address, None)
        if socket is None:
            return
        del self._addresses[socket]
        monitor = next(m for m, monitored in self._monitors.items() if monitored == address)
        del self._monitors[monitor]
        for dropped in (socket, monitor):
            self._poller.unregister(dropped)
        socket.disable_monitor()
        socket.close(linger=0)
        monitor.close(linger=0)
        log.warning("dropped the connection to %s: a request stayed queued past its timeout", address)
        self._fail_address(address)

    def request(self, address: str, api: protocol.Api, body: Any, timeout_ms: int,
                connect_timeout_ms: int = CONNECT_TIMEOUT_MS) -> Any:
        """Send one request and wait for its response; raises its error.

        A broker that does not accept the connection within connect_timeout_ms
        fails fast with BrokerNotAvailableError, so callers try the next one.
        """
        outcome: list = []
        deadline = time.monotonic() + timeout_ms / 1000
        connect_deadline = time.monotonic() + min(timeout_ms, connect_timeout_ms) / 1000
        while not self.send(address, api, body, lambda result, error: outcome.append((result, error)), timeout_ms):
            if time.monotonic() >= connect_deadline:
                raise BrokerNotAvailableError(f"no connection to {address}")
            self.poll(10)
        while not outcome:
            self.poll(max(1.0, (deadline - time.monotonic()) * 1000))
        result, error = outcome[0]
        if error is not None:
            raise error
        return result

    def close(self) -> None:
        for socket in self._sockets.values():
            socket.disable_monitor()
            socket.close(linger=0)
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
        self._sockets.clear()
        self._addresses.clear()
