"""What an append did, handed back to the replica manager."""

from __future__ import annotations

from dataclasses import dataclass

from rill.client.batch import BatchHeader

NO_TIMESTAMP = -1


@dataclass(frozen=True, slots=True)
class AppendInfo:
    """The offsets an append assigned (or copied), and how much it wrote. Immutable.

    For an append of no batches, first_offset is the log end offset,
    last_offset is one less, and the counts are zero. For an idempotent
    producer's retry of batches stored already (nothing written), the offsets
    are those of the stored batches and the counts are zero.
    """

    first_offset: int
    last_offset: int
    max_timestamp: int
    record_count: int
    size_bytes: int

    @classmethod
    def of_batches(cls, headers: list[BatchHeader]) -> AppendInfo:
        """Summary of batches (in offset order) that now carry their final offsets."""
        return cls(
            first_offset=headers[0].base_offset,
            last_offset=headers[-1].last_offset,
            max_timestamp=max(header.max_timestamp for header in headers),
            record_count=sum(header.record_count for header in headers),
            size_bytes=sum(header.size for header in headers),
        )

    @classmethod
    def nothing_at(cls, log_end_offset: int) -> AppendInfo:
        return cls(log_end_offset, log_end_offset - 1, NO_TIMESTAMP, 0, 0)
