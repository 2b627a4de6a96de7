"""One partition replica hosted on this broker: its log, its role and its high watermark.

Invariants: ``high_watermark <= log.log_end_offset``; the high watermark never
goes back while this broker leads; consumers read only below it. With the
ISR made only of this broker, the high watermark is the log end offset as
soon as an append returns. Not thread-safe: used from the asyncio loop only.
"""

from __future__ import annotations

from rill.client.errors import NotEnoughReplicasError, NotLeaderError
from rill.node.log.append_info import AppendInfo
from rill.node.log.log import Log
from rill.node.metadata_state import PartitionState


class Partition:
    """A replica of (topic, index) on broker ``node_id``."""

    def __init__(self, topic: str, index: int, node_id: int, log: Log, state: PartitionState,
                 min_insync_replicas: int):
        self.topic = topic
        self.index = index
        self.node_id = node_id
        self.log = log
        self.state = state
        self.min_insync_replicas = min_insync_replicas
        self.high_watermark = log.log_end_offset if self.is_leader else 0

    @property
    def is_leader(self) -> bool:
        return self.state.leader == self.node_id

    def ensure_leader(self) -> None:
        """Raise NotLeaderError unless this broker leads the partition."""
        if not self.is_leader:
            raise NotLeaderError(f"broker {self.node_id} does not lead {self.topic}-{self.index}")

    def update_state(self, state: PartitionState, min_insync_replicas: int) -> None:
        """Take a newer leader, epoch or ISR from the metadata."""
        if state.leader_epoch < self.state.leader_epoch:
            return
        self.state = state
        self.min_insync_replicas = min_insync_replicas
        self._advance_high_watermark()

    def append_as_leader(self, records: bytes, acks: int) -> AppendInfo:
        """Validate and append a producer's batches; raises if this broker may not take them."""
        self.ensure_leader()
        if acks == -1 and len(self.state.isr) < self.min_insync_replicas:
            raise NotEnoughReplicasError(
                f"{self.topic}-{self.index} has {len(self.state.isr)} in-sync replicas, "
                f"min.insync.replicas is {self.min_insync_replicas}"
            )
        info = self.log.append(records, self.state.leader_epoch)
        self._advance_high_watermark()
        return info

    def read(self, fetch_offset: int, max_bytes: int) -> bytes:
        """Committed batches (below the high watermark) from fetch_offset; raises OffsetOutOfRangeError."""
        self.ensure_leader()
        return self.log.read(fetch_offset, max_bytes, max_offset=self.high_watermark)

    def _advance_high_watermark(self) -> None:
        if self.is_leader and self.state.isr == (self.node_id,):
            end = self.log.log_end_offset
            assert end >= self.high_watermark, "the high watermark never goes back"
            self.high_watermark = end
