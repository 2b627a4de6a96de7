"""Slow requests: one that takes longer than ``slow_request_ms`` to answer is logged as a slow_request warning.

The time counted runs from reading the request to handing its answer to
ZeroMQ, so it includes waiting for Raft, for the ISR (acks=all) and for the
disk, but not a long-poll fetch's own wait: a fetch's ``max_wait_ms`` is
what the client asked for, so only time beyond it counts. The lines are
bounded (``LINES_PER_S_MAX``): past that, slow requests are counted and the
next line says how many were not logged (``not_logged``), so a broker that
is slow for everyone does not also flood its log.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from rill.client import protocol
from rill.node.structured_logging import log_event

log = logging.getLogger(__name__)

DEFAULT_SLOW_REQUEST_MS = 1_000
LINES_PER_S_MAX = 10


def asked_wait_ms(api: protocol.Api, body: object) -> int:
    """How long the request itself asked the broker to wait: a fetch's max_wait_ms, else 0."""
    return max(body.max_wait_ms, 0) if api.key == protocol.FETCH.key else 0


class SlowRequestLog:
    """Logs the requests answered later than ``threshold_ms``, at most LINES_PER_S_MAX lines a second.

    ``finished`` is called once per request: one clock read and a comparison when it was fast.
    Not thread-safe: runs on the broker's asyncio loop.
    """

    def __init__(self, threshold_ms: int, clock_s: Callable[[], float] = time.monotonic):
        self.threshold_ms = threshold_ms
        self._clock_s = clock_s
        self._window_start_s = 0.0
        self._lines_in_window = 0
        self._not_logged = 0

    def finished(self, api: protocol.Api, body: object, client_id: str, request_bytes: int,
                 started_s: float) -> None:
        """The request read at ``started_s`` (clock seconds) was answered now; log it if it was slow."""
        now_s = self._clock_s()
        duration_ms = (now_s - started_s) * 1000
        waited_ms = asked_wait_ms(api, body)
        if duration_ms - waited_ms <= self.threshold_ms:
            return
        if now_s - self._window_start_s >= 1.0:
            self._window_start_s, self._lines_in_window = now_s, 0
        if self._lines_in_window >= LINES_PER_S_MAX:
            self._not_logged += 1
            return
        self._lines_in_window += 1
        log_event(log, logging.WARNING, "slow_request",
                  f"slow request: {api.name} from {client_id or '(no client id)'} took {duration_ms:.1f} ms "
                  f"(slow_request_ms={self.threshold_ms})",
                  api=api.name, client_id=client_id, duration_ms=round(duration_ms, 1),
                  request_bytes=request_bytes, asked_wait_ms=waited_ms, not_logged=self._not_logged)
        self._not_logged = 0
