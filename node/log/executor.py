"""Slow disk work of the partition logs on worker threads, so that it never stalls the broker's event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Hashable, TypeVar

Result = TypeVar("Result")

DISK_THREADS = 2  # fsyncs and deletions of different logs overlap; more threads only queue on the disk


class LogExecutor:
    """Runs blocking disk work (fsync, file deletion, compaction, recovery) on a small thread pool.

    Every log has an ``exclusive(key)`` lock, an asyncio.Lock (first come,
    first served): work that must not interleave with other maintenance of
    the same log (flush, retention, compaction, truncation, closing) holds it
    across its loop part and its thread part, so jobs of one log run one at
    a time in the order they were asked for, while jobs of different logs
    run in parallel. Appends and reads do not take it: they stay on the loop
    and never wait for the disk work of their log.

    Used from the one asyncio thread; the jobs run on the pool's threads.
    """

    def __init__(self, threads: int = DISK_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rill-disk")
        self._locks: dict[Hashable, asyncio.Lock] = {}

    def exclusive(self, key: Hashable) -> asyncio.Lock:
        """The lock that orders the maintenance of one log."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def busy(self, key: Hashable) -> bool:
        """Whether maintenance of the log holds its lock now (a periodic pass may skip it until next time)."""
        lock = self._locks.get(key)
        return lock is not None and lock.locked()

    def forget(self, key: Hashable) -> None:
        """Drop the lock of a log that is gone (closed, deleted or taken offline) once nothing holds it."""
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    async def run(self, function: Callable[..., Result], *arguments: object) -> Result:
        """``function(*arguments)`` on a worker thread; the caller holds the log's lock if it needs one."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *arguments)

    def shutdown(self) -> None:
        """Wait for running jobs, then stop the threads."""
        self._pool.shutdown(wait=True)
