"""A ZeroMQ socket served from the asyncio loop's own selector, without a future per message.

pyzmq's asyncio sockets make a Future, a poller registration and several
enum operations for every message: in a ROUTER echo measured side by side
(see docs/architecture.md, "Performance"), about 55 us of the loop's CPU per
request and answer, against about 20 us when the socket's ZMQ_FD is watched
with ``loop.add_reader`` and messages are read with NOBLOCK until none is
left. That difference is paid on every produce, fetch and follower fetch.

ZMQ_FD is edge-triggered: it signals that the socket's state changed, not
that a message waits. So a drain reads while the socket's EVENTS say a
message waits (reading EVENTS also takes the pending signal); one that
stops early (``DRAIN_MAX`` messages, so that parked requests and timers get
their turn) schedules the next; and after every send, which may consume the
signal, the socket's EVENTS are checked and a drain is scheduled if input
waits. Not thread-safe: the loop's thread only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

import zmq

log = logging.getLogger(__name__)

DRAIN_MAX = 256  # messages read in one turn of the loop before others get theirs

# pyzmq's flags are enum members whose ``|`` and ``&`` run Python code; a message costs several such
# operations (and pyzmq's multipart helpers a zmq.Again exception per drain), so plain ints are used.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)

MessageHandler = Callable[[list[bytes]], None]


class LoopSocket:
    """Hands each multipart message of ``socket`` to ``on_message`` on the loop; sends without blocking.

    ``on_message`` runs synchronously in the drain; what it raises is logged and the drain goes on, so one
    bad message never stops the socket. ``send_multipart`` raises zmq.Again when the peer's queue is full
    (NOBLOCK), as a plain socket does.
    """

    def __init__(self, socket: zmq.Socket, on_message: MessageHandler, loop: asyncio.AbstractEventLoop | None = None):
        self.socket = socket
        self._on_message = on_message
        self._loop = loop or asyncio.get_running_loop()
        self._fd = socket.getsockopt(zmq.FD)
        self._drain_scheduled = False
        self._loop.add_reader(self._fd, self._drain)
        self._schedule_drain()  # messages that came before the reader was added signal nothing

    @property
    def closed(self) -> bool:
        return self.socket.closed

    def send_multipart(self, frames: Sequence[bytes], copy: bool = True) -> None:
        socket = self.socket
        for frame in frames[:-1]:
            socket.send(frame, _SNDMORE_NOBLOCK, copy=copy)
        socket.send(frames[-1], _NOBLOCK, copy=copy)
        self._check_input()

    def send(self, frame: bytes) -> None:
        self.socket.send(frame, _NOBLOCK)
        self._check_input()

    def _check_input(self) -> None:
        """After a send: a message that arrived meanwhile may have had its signal taken by the send."""
        if not self._drain_scheduled and self.socket.getsockopt(_EVENTS) & _POLLIN:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        self._drain_scheduled = True
        self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        socket = self.socket
        for _ in range(DRAIN_MAX):
            if socket.closed or not socket.getsockopt(_EVENTS) & _POLLIN:
                return
            frames = [socket.recv(_NOBLOCK)]
            while socket.getsockopt(_RCVMORE):
                frames.append(socket.recv(_NOBLOCK))
            try:
                self._on_message(frames)
            except Exception:  # noqa: BLE001 - one message's bug must not stop the socket
                log.exception("handling a message failed; the socket goes on")
        if not self._drain_scheduled:
            self._schedule_drain()

    def close(self) -> None:
        """Stop reading and close the socket at once (linger 0); safe to call twice."""
        if self.socket.closed:
            return
        self._loop.remove_reader(self._fd)
        self.socket.close(linger=0)
