"""Whether a peer broker's process is still there, judged by its TCP connection (a ZeroMQ socket monitor).

When a process dies, the kernel closes its connections and its port refuses
new ones at once. A process that is alive but not running (stopped by
SIGSTOP, starved of CPU, stuck in a slow fsync) keeps its connections open
and accepts new ones, because the kernel answers for it. So a failed
connection attempt, with no connection since, says the process that
listened there is gone; the controller fences such a broker at once instead
of waiting for its session to time out (node/metadata/liveness.py).

libzmq reports on a connecting socket: CONNECTED (a TCP connection is up),
DISCONNECTED (it closed), CLOSED (a connection attempt failed: refused or
unreachable) and CONNECT_RETRIED (the next attempt is scheduled). Runs on
the asyncio loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Coroutine

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
Spawn = Callable[[str, Coroutine[Any, Any, object]], asyncio.Task]


class ConnectionMonitor:
    """The connection state of one connecting socket, kept up to date from its monitor events.

    ``refused_since`` is the time (``time.monotonic``) of the first failed
    connection attempt since the socket was last connected (or created), and
    None while connected or before any attempt failed. Create the monitor
    before the socket connects, so that no event is missed. ``spawn`` starts
    the task that reads the events (the node's TaskSupervisor.start).
    """

    def __init__(self, socket: zmq.asyncio.Socket, peer: str, spawn: Spawn):
        self._peer = peer
        self._events = socket.get_monitor_socket(EVENTS)
        self._socket = socket
        self.connected = False
        self.refused_since: float | None = None
        self._task = spawn(f"connection monitor of {peer}", self._run())

    async def _run(self) -> None:
        while True:
            message = parse_monitor_message(await self._events.recv_multipart())
            self._on_event(message["event"])

    def _on_event(self, event: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            if self.refused_since is not None:
                log.info("connected to %s again", self._peer)
            self.connected = True
            self.refused_since = None
        elif event == zmq.EVENT_DISCONNECTED:
            self.connected = False
            log.debug("connection to %s closed", self._peer)
        elif event == zmq.EVENT_CLOSED and not self.connected and self.refused_since is None:
            log.info("connecting to %s failed: nothing listens there (or it is unreachable)", self._peer)
            self.refused_since = time.monotonic()

    def close(self) -> None:
        """Stop watching (before the socket itself closes)."""
        self._task.cancel()
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._events.close(linger=0)
