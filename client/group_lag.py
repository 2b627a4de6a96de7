"""A group's lag as its coordinator reports it in DescribeGroup, as the public PartitionLag values.

The coordinator reads the lag (node/coordinator/lag.py), so Admin,
``rill groups describe``, ``Consumer.lag()`` and the brokers' /metrics all
show the same numbers: lag in records is the log end (high watermark) minus
the committed offset, lag in seconds the age of the first uncommitted record.
"""

from __future__ import annotations

from rill.client import protocol
from rill.client.types import PartitionLag


def partition_lags(answer: protocol.DescribeGroupResponse) -> list[PartitionLag]:
    """One PartitionLag per partition of the answer, in its order (sorted by topic and partition)."""
    return [_partition_lag(entry) for entry in answer.partitions]


def _partition_lag(entry: protocol.GroupPartitionLag) -> PartitionLag:
    committed = entry.committed_offset if entry.committed_offset >= 0 else None
    lag = None if committed is None or entry.log_end_offset < 0 else entry.log_end_offset - committed
    return PartitionLag(entry.topic, entry.partition, committed, entry.log_end_offset, lag, entry.lag_seconds,
                        entry.owner_member_id or None)
