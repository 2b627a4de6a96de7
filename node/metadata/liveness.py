"""Which brokers the controller fences, and why: a dead process at once, a silent one after its session.

Two signals for two kinds of trouble:

- A broker whose process died: the kernel closed its connections and its
  port refuses new ones (network/connection_monitor.py). If connecting has
  failed since before the broker's current incarnation registered, that
  process is gone: it is fenced at once, so its partitions move within a
  fraction of a second. A restarted process that registered after the
  refusal is not fenced (nor is a broker this controller cannot reach but
  which registered anyway: its heartbeats decide).
- A broker that is alive but silent (frozen, cut off, or stalled by CPU
  starvation, a slow fsync or SIGSTOP): its port stays open, because the
  kernel answers for it, so only its heartbeats tell. It is fenced once none
  came for ``session_timeout_ms``, which is longer than the stalls a broker
  should ride out (node/config.py).

The clocks live in memory on the controller. A new controller starts every
session afresh: the broker whose stall caused the Raft election (a stopped
controller) gets its full session too, and a dead one is caught by its port.
Nor does the controller count its own stalls against the brokers: when two
checks are more than ``OWN_STALL_S`` apart, the controller was not listening
meanwhile, and every session is extended by the gap. Not thread-safe: the
asyncio loop only.
"""

from __future__ import annotations

from typing import Callable, Iterable

OWN_STALL_S = 1.0  # the controller checks every 100 ms: a gap this long is a stall of its own


class BrokerLiveness:
    """The controller's view of which registered brokers are alive.

    ``refused_since(node_id)`` says since when (``time.monotonic``) connecting
    to the broker fails (None while it is connected). Times passed in are
    ``time.monotonic`` values.
    """

    def __init__(self, session_timeout_ms: int, refused_since: Callable[[int], float | None]):
        self.session_timeout_s = session_timeout_ms / 1000
        self._refused_since = refused_since
        self._session_start: dict[int, float] = {}  # the last heartbeat, or when this controller took over
        self._registered_at: dict[int, float] = {}  # the registrations this controller committed
        self._checked_at: float | None = None

    def take_over(self, node_ids: Iterable[int], now: float) -> None:
        """This broker just became the controller: every session starts now, no registration is known."""
        self._session_start = {node_id: now for node_id in node_ids}
        self._registered_at = {}
        self._checked_at = now

    def registered(self, node_id: int, now: float) -> None:
        """The broker (re)registered an incarnation: its process is alive now."""
        self._session_start[node_id] = now
        self._registered_at[node_id] = now

    def heard_from(self, node_id: int, now: float) -> None:
        """A heartbeat of the broker's current incarnation arrived."""
        self._session_start[node_id] = now

    def to_fence(self, node_ids: Iterable[int], now: float) -> dict[int, str]:
        """Those of ``node_ids`` (the live brokers) to fence now, each with the reason, for the log."""
        self._forgive_own_stall(now)
        due = {}
        for node_id in node_ids:
            refused_since = self._refused_since(node_id)
            silent_s = now - self._session_start.setdefault(node_id, now)
            if refused_since is not None and refused_since > self._registered_at.get(node_id, float("-inf")):
                due[node_id] = "its process is gone (its connection closed and its port refuses a new one)"
            elif silent_s > self.session_timeout_s:
                due[node_id] = f"no heartbeat for {silent_s:.1f} s (session timeout {self.session_timeout_s:g} s)"
        return due

    def _forgive_own_stall(self, now: float) -> None:
        """Extend every session by the time since the last check if that was a stall of this controller."""
        gap = 0.0 if self._checked_at is None else now - self._checked_at
        self._checked_at = now
        if gap > OWN_STALL_S:
            self._session_start = {node_id: min(now, start + gap) for node_id, start in self._session_start.items()}
