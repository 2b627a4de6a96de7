"""The controller's producer ids: handed out one by one from a block taken through Raft.

Kafka's ProducerIdManager, on the controller. A block of
PRODUCER_ID_BLOCK_SIZE ids is taken with the replicated command
``MetadataState.allocate_producer_id_block``, which only a Raft majority
commits, so blocks never overlap: an id is never handed out twice, across
controller changes and restarts alike. The block lives in memory only; a
broker that restarts, or becomes controller without one, takes a new block
(the rest of an old one is skipped, never reused).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from rill.node.metadata.state import PRODUCER_ID_BLOCK_SIZE


class ProducerIdBlocks:
    """Producer ids from the current block, refilled through ``allocate_block`` (a Raft commit that returns
    the first id of a new block). Runs on the asyncio loop; concurrent callers share one refill."""

    def __init__(self, allocate_block: Callable[[], Awaitable[int]]) -> None:
        self._allocate_block = allocate_block
        self._next_id = 0
        self._end_id = 0  # the block is [next_id, end_id); empty at first
        self._refilling = asyncio.Lock()

    @property
    def remaining(self) -> int:
        """Ids left in the current block."""
        return self._end_id - self._next_id

    async def next_id(self) -> int:
        """A producer id never handed out before; may wait for a Raft commit (its errors propagate)."""
        async with self._refilling:
            if self._next_id >= self._end_id:
                first = await self._allocate_block()
                self._next_id, self._end_id = first, first + PRODUCER_ID_BLOCK_SIZE
            producer_id = self._next_id
            self._next_id += 1
            return producer_id
