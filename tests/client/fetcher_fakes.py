"""Stand-ins for a Fetcher's network and metadata: fetch tests look at the requests it sends and answer them."""

from __future__ import annotations

from rill.client import protocol

LEADER = "127.0.0.1:1"


class FakeNetwork:
    """Records the fetches sent; the test answers them through the recorded callbacks."""

    def __init__(self):
        self.sent: list[tuple[protocol.FetchRequest, object]] = []

    def send(self, address, api, body, callback, timeout_ms) -> bool:
        self.sent.append((body, callback))
        return True


class FakeMetadata:
    """Every partition is led by LEADER."""

    def leader_address(self, topic: str, partition: int) -> str:
        return LEADER
