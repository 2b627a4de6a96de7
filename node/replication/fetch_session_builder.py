"""The follower's side of a fetch session with one leader: which partitions the next fetch must name.

The leader caches each partition's fetch state (fetch_session.py), so after
the first, full fetch a fetch names only the partitions whose state changed
since the leader last saw it (``changed``: new, appended to, truncated,
failed, or no longer followed). The session starts over with a full fetch
after any failure: a lost answer, or the leader's session error.
"""

from __future__ import annotations

from typing import Callable, Iterable

from rill.client import protocol

PartitionKey = tuple[str, int]
# (fetch offset, leader epoch, topic id) of a partition to fetch now; None if it is not to be fetched now
FetchState = Callable[[PartitionKey], tuple[int, int, str] | None]


class FollowerSession:
    """Builds the fetch requests of one follower to one leader, and takes the leader's answers."""

    def __init__(self, replica_id: int):
        self._replica_id = replica_id
        self.session_id = 0
        self.epoch = protocol.NEW_SESSION_EPOCH  # of the next fetch: 0 opens a session (a full fetch)
        self.sent: dict[PartitionKey, tuple[int, int]] = {}  # the leader's copy: fetch offset, generation
        self.changed: set[PartitionKey] = set()

    def mark(self, key: PartitionKey) -> None:
        """The partition's fetch state changed (or it stopped being fetched): name it in the next fetch."""
        self.changed.add(key)

    def restart(self) -> None:
        """Start over with a full fetch (the leader drops the old session when it sees it)."""
        self.epoch = protocol.NEW_SESSION_EPOCH
        self.sent.clear()
        self.changed.clear()

    def request(self, fetchable: Iterable[PartitionKey], state: FetchState, generation: Callable[[PartitionKey], int],
                max_wait_ms: int, max_bytes: int, partition_max_bytes: int) -> protocol.FetchRequest:
        """The next fetch: every ``fetchable`` partition when the session starts, else the changed ones
        (``state`` None for a partition to drop). Notes what the leader will hold."""
        full = self.epoch == protocol.NEW_SESSION_EPOCH
        keys = fetchable if full else self.changed
        self.changed = set()
        by_topic: dict[str, list[protocol.PartitionFetch]] = {}
        topic_ids: dict[str, str] = {}
        forgotten: dict[str, list[int]] = {}
        for key in keys:
            wanted = state(key)
            if wanted is None:
                if self.sent.pop(key, None) is not None:
                    forgotten.setdefault(key[0], []).append(key[1])
                continue
            offset, leader_epoch, topic_id = wanted
            by_topic.setdefault(key[0], []).append(protocol.PartitionFetch(key[1], offset, partition_max_bytes,
                                                                           leader_epoch))
            topic_ids[key[0]] = topic_id
            self.sent[key] = (offset, generation(key))
        return protocol.FetchRequest(
            max_wait_ms, 1, max_bytes, [protocol.TopicFetch(t, parts, topic_ids[t]) for t, parts in by_topic.items()],
            replica_id=self._replica_id, session_id=self.session_id, session_epoch=self.epoch,
            forgotten=[protocol.ForgottenTopic(t, parts) for t, parts in forgotten.items()])

    def answered(self, response: protocol.FetchResponse) -> bool:
        """Take the leader's answer to the last request; False (and a restart) on a session error."""
        if response.error_code:
            self.restart()
            return False
        self.session_id = response.session_id
        self.epoch += 1
        return True
