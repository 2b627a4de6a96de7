"""Waiting on one of our own futures for at most a while, at the cost of one timer.

Long polls (consumer and follower fetches), acks=all produces and requests
to other brokers (a follower's fetches) wait for a future the broker
completes, or for their deadline. ``asyncio.wait_for``
and ``asyncio.wait`` wrap the future in a second one and done-callbacks,
so the waiting coroutine resumes a loop turn after the future completes,
and each wait allocates several objects: on a broker that parks one or
more requests per record, that is paid thousands of times a second.
Here the deadline completes the future itself with ``TIMED_OUT``; whoever
completes it otherwise checks ``done()`` first, as wakers already do.
"""

from __future__ import annotations

import asyncio

TIMED_OUT = object()  # the result a future gets when its deadline passed first


async def wait_at_most(future: asyncio.Future, timeout_s: float) -> bool:
    """Wait until ``future`` is done, completing it with ``TIMED_OUT`` after ``timeout_s``; True if it was
    completed by someone else (with a result or an exception), False if the deadline came first.

    ``future`` must be one of ours, never cancelled by anyone but the waiting task; an exception set on it
    is not raised here: the caller reads it from the future.
    """
    if not future.done():
        if timeout_s <= 0:
            future.set_result(TIMED_OUT)
            return False
        handle = asyncio.get_running_loop().call_later(timeout_s, _time_out, future)
        try:
            await future
        except Exception:  # noqa: BLE001, S110 - its outcome is the caller's to read from the future
            pass
        finally:
            handle.cancel()
    return not timed_out(future)


def timed_out(future: asyncio.Future) -> bool:
    """Whether ``future`` was completed by its deadline (``wait_at_most``)."""
    return future.done() and not future.cancelled() and future.exception() is None and future.result() is TIMED_OUT


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(TIMED_OUT)
