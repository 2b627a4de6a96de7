"""A batch's completion: waits before and after it, and ``wait_settled`` after its callbacks.

The events a waiter blocks on are made by the first thread that waits, so
these check that a wait that starts before the completion is woken, one
that starts after returns at once, and neither misses the outcome.
"""

from __future__ import annotations

import threading
import time

from rill.client.accumulator import BatchResult

WAIT_S = 10.0


def test_a_wait_that_starts_first_is_woken_by_the_completion():
    result = BatchResult()
    woken = []
    waiter = threading.Thread(target=lambda: woken.append(result.wait(WAIT_S)))
    waiter.start()
    deadline = time.monotonic() + WAIT_S
    while result._events is None:  # the waiter made its events: it waits now (or is about to)
        assert time.monotonic() < deadline, "the waiter never started waiting"
        threading.Event().wait(0.001)
    result.complete(42, None)
    waiter.join(WAIT_S)
    assert woken == [True]
    assert result.done and result.base_offset == 42


def test_waits_after_the_completion_return_at_once_without_events():
    result = BatchResult()
    assert not result.done
    assert result.wait(0) is False
    result = BatchResult()
    result.complete(7, None)
    assert result.wait(0) and result.wait_settled(0)
    assert result._events is None


def test_wait_settled_returns_only_after_the_callbacks_ran():
    result = BatchResult()
    ran = threading.Event()
    release = threading.Event()

    def callback() -> None:
        ran.set()
        release.wait(WAIT_S)

    result.add_callback(callback)
    completer = threading.Thread(target=result.complete, args=(3, None))
    completer.start()
    assert ran.wait(WAIT_S)
    assert result.wait(WAIT_S)  # the outcome is known while the callback still runs
    assert result.wait_settled(0) is False
    release.set()
    assert result.wait_settled(WAIT_S)
    completer.join(WAIT_S)
