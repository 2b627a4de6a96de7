"""Where a record goes: Kafka's keyed partitioning and sticky partitioning for unkeyed records."""

from __future__ import annotations

import random

from murmurhash2 import murmurhash2

MURMUR2_SEED = 0x9747B28C


def partition_for_key(key: bytes, partition_count: int) -> int:
    """Kafka's default: (murmur2(key) & 0x7fffffff) % partitions, so every language agrees."""
    return (murmurhash2(key, MURMUR2_SEED) & 0x7FFFFFFF) % partition_count


class StickyPartitioner:
    """Unkeyed records stay on one partition per topic until its batch closes (KIP-480)."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}  # topic -> the sticky partition

    def partition(self, topic: str, partition_count: int) -> int:
        current = self.current.get(topic)
        if current is None or current >= partition_count:
            current = self.current[topic] = random.randrange(partition_count)
        return current

    def batch_closed(self, topic: str, partition: int, partition_count: int) -> None:
        """Move unkeyed records of ``topic`` to another partition once the sticky one's batch closed."""
        if self.current.get(topic) == partition and partition_count > 1:
            choice = random.randrange(partition_count - 1)
            self.current[topic] = choice if choice < partition else choice + 1
