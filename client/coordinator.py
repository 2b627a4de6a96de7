"""Finding a consumer group's coordinator and sending it requests (blocking, with retries).

Any broker answers FindCoordinator. The coordinator moves when leadership
of the group's ``__consumer_offsets`` partition moves, so a request that
meets NotCoordinator, CoordinatorNotAvailable, a lost connection or a
timeout finds the coordinator again and retries until the deadline. Used by
the consumer (commits, committed offsets) and by Admin (group describe,
reset, delete). Not thread-safe: owned by the thread that owns the network
client.
"""

from __future__ import annotations

import time
from typing import Any

from rill.client import protocol
from rill.client.errors import (
    BrokerNotAvailableError,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
    RequestTimeoutError,
    RillError,
    error_for_code,
)
from rill.client.metadata import ClusterMetadata
from rill.client.network import FAST_CONNECT_TIMEOUT_MS, NetworkClient, attempt_ms

RETRY_BACKOFF_S = 0.1
LOOKUP_TIMEOUT_MS = 2_000
COORDINATOR_MOVED = (NotCoordinatorError, CoordinatorNotAvailableError, CoordinatorLoadInProgressError,
                     BrokerNotAvailableError, RequestTimeoutError)


def coordinator_moved(error: RillError) -> bool:
    """Whether an error means "find the coordinator again and retry"."""
    return isinstance(error, COORDINATOR_MOVED)


class CoordinatorLink:
    """The coordinator of one group, found on demand; ``request`` retries across coordinator moves."""

    def __init__(self, network: NetworkClient, metadata: ClusterMetadata, group_id: str, timeout_ms: int):
        self._network = network
        self._metadata = metadata
        self.group_id = group_id
        self.timeout_ms = timeout_ms
        self.address: str | None = None
        self.last_error: RillError | None = None  # why the last lookup failed
        self._looking = False
        self._asked = 0

    def invalidate(self) -> None:
        self.address = None

    def look_up(self) -> None:
        """Ask one broker (the next in turn) where the coordinator is, without waiting: the answer sets
        ``address`` (or ``last_error``) when the network client dispatches it. One lookup at a time."""
        if self._looking or self.address is not None:
            return
        addresses = self._metadata.addresses()
        address = addresses[self._asked % len(addresses)]
        self._asked += 1
        if self._network.send(address, protocol.FIND_COORDINATOR, protocol.FindCoordinatorRequest(self.group_id),
                              self._on_found, LOOKUP_TIMEOUT_MS):
            self._looking = True

    def _on_found(self, response: protocol.FindCoordinatorResponse | None, error: RillError | None) -> None:
        self._looking = False
        if error is None and response.error_code:
            error = error_for_code(response.error_code, response.error_message)
        if error is not None:
            self.last_error = error
            return
        self.address = f"{response.host}:{response.port}"

    def find(self, deadline: float) -> str:
        """The coordinator's address, asking brokers in turn until one names it or the deadline passes."""
        last_error: RillError = CoordinatorNotAvailableError(f"no coordinator found for group {self.group_id!r}")
        for _ in range(10_000):
            if self.address is not None:
                return self.address
            for address in self._metadata.addresses():
                try:
                    response = self._network.request(address, protocol.FIND_COORDINATOR,
                                                     protocol.FindCoordinatorRequest(self.group_id),
                                                     attempt_ms(deadline), connect_timeout_ms=FAST_CONNECT_TIMEOUT_MS)
                except RillError as error:
                    last_error = error
                    continue
                if response.error_code:
                    last_error = error_for_code(response.error_code, response.error_message)
                    if not last_error.retriable:
                        raise last_error
                    break
                self.address = f"{response.host}:{response.port}"
                return self.address
            if time.monotonic() + RETRY_BACKOFF_S > deadline:
                raise last_error
            time.sleep(RETRY_BACKOFF_S)
            self._refresh_brokers()
        raise last_error

    def _refresh_brokers(self) -> None:
        try:
            self._metadata.refresh(self._network, [], self.timeout_ms)
        except RillError:
            pass  # the bootstrap list stays; the next attempt tries it

    def request(self, api: protocol.Api, body: Any, timeout_ms: int | None = None) -> Any:
        """Send to the coordinator; retry on coordinator moves. Raises the response's other errors."""
        deadline = time.monotonic() + (timeout_ms or self.timeout_ms) / 1000
        last_error: RillError | None = None
        for _ in range(10_000):
            if time.monotonic() >= deadline:
                break
            try:
                address = self.find(deadline)
                response = self._network.request(address, api, body, attempt_ms(deadline))
                if response.error_code:
                    raise error_for_code(response.error_code, response.error_message)
                return response
            except RillError as error:
                if not coordinator_moved(error):
                    raise
                last_error = error
                self.invalidate()
                time.sleep(RETRY_BACKOFF_S)
        raise last_error or RequestTimeoutError(f"{api.name} for group {self.group_id!r} timed out")

