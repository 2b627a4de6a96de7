"""Supervision of a broker's long-running tasks: none of them may end unnoticed.

A broker runs a few tasks for as long as it lives: the network servers'
serve loops, the heartbeats to the controller, a replica fetcher per
leader, a reader per connection to another broker, and the periodic duties
(controller tick, ISR check, group expiry, retention, flush). An asyncio
task that ends by an exception nobody awaits vanishes without a word, and
the process lives on deaf: alive, answering nobody, fenced by the
controller. So each of them is started through a
``TaskSupervisor``. When one ends in a way it must not (an exception, or a
return from a task meant to run until cancelled), the supervisor logs a
CRITICAL line with the traceback and calls ``on_failure``, which stops the
node; the process then exits with ``FATAL_EXIT_CODE``. Should that orderly
stop hang, a watchdog thread ends the process after ``stop_grace_s``.

Periodic duties (``run_every``) are different: a failed run is logged and
the next run goes on, since the next retention or flush pass may well
work. A duty that keeps failing is reported again, with a count and the
latest traceback, every ``FAILING_REPORT_INTERVAL_S``, and once more when it
works again, so it stays visible without flooding the log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
from typing import Any, Awaitable, Callable, Coroutine

log = logging.getLogger(__name__)

FATAL_EXIT_CODE = 70  # EX_SOFTWARE (sysexits.h): an internal error stopped the broker
STOP_GRACE_S = 30.0
FAILING_REPORT_INTERVAL_S = 60.0


class TaskSupervisor:
    """Starts named tasks and stops the node when one of them dies. Used on the asyncio loop's thread.

    ``failure`` is None while all is well, else a line saying which task died and how.
    """

    def __init__(self, on_failure: Callable[[], None], stop_grace_s: float = STOP_GRACE_S):
        self._on_failure = on_failure
        self._stop_grace_s = stop_grace_s
        self._stopping = False
        self._watchdog: threading.Timer | None = None
        self.failure: str | None = None

    def start(self, name: str, coroutine: Coroutine[Any, Any, object], *, may_return: bool = False
              ) -> asyncio.Task:
        """Run ``coroutine`` as a task; ``may_return``: returning is a normal end (it still may not raise)."""
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        task.add_done_callback(lambda done: self._ended(done, may_return))
        return task

    def stopping(self) -> None:
        """The node is stopping on purpose: tasks that end from now on are not a failure of the node."""
        self._stopping = True

    def close(self) -> None:
        """The node has stopped in order: the watchdog is not needed any more."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _ended(self, task: asyncio.Task, may_return: bool) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if self._stopping:
            if error is not None:
                log.error("task %r failed while the node stops", task.get_name(), exc_info=error)
            return
        if error is not None:
            self.fail(f"task {task.get_name()!r} died: {error!r}", error)
        elif not may_return:
            self.fail(f"task {task.get_name()!r} ended, but it must run as long as the node does", None)

    def fail(self, reason: str, error: BaseException | None) -> None:
        """The node cannot go on: log why, arm the watchdog and ask the node to stop (once)."""
        log.critical("%s; stopping the node (it will exit with code %d)", reason, FATAL_EXIT_CODE, exc_info=error)
        if self.failure is not None:
            return
        self.failure = reason
        self._watchdog = threading.Timer(self._stop_grace_s, self._exit_now)
        self._watchdog.daemon = True
        self._watchdog.start()
        self._on_failure()

    def _exit_now(self) -> None:
        log.critical("the node did not stop within %.0f s after: %s; exiting now", self._stop_grace_s, self.failure)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(FATAL_EXIT_CODE)


class FailureStreak:
    """Logs the failures of one periodic duty: the first with its traceback, then one line per
    ``report_interval_s`` while they go on, and one when the duty works again."""

    def __init__(self, name: str, report_interval_s: float = FAILING_REPORT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self._name = name
        self._report_interval_s = report_interval_s
        self._clock = clock
        self.failures = 0
        self._since = 0.0
        self._reported_at = 0.0

    def failed(self, error: BaseException) -> None:
        now = self._clock()
        self.failures += 1
        if self.failures == 1:
            self._since = self._reported_at = now
            log.error("periodic task %s failed; it runs again, and is reported every %.0f s while it keeps "
                      "failing", self._name, self._report_interval_s, exc_info=error)
        elif now - self._reported_at >= self._report_interval_s:
            self._reported_at = now
            log.error("periodic task %s has failed %d runs in a row, for %.0f s; the latest failure:",
                      self._name, self.failures, now - self._since, exc_info=error)

    def succeeded(self) -> None:
        if self.failures:
            log.warning("periodic task %s works again after %d failed runs", self._name, self.failures)
        self.failures = 0


async def run_every(name: str, interval_ms: int, action: Callable[[], Awaitable[None] | None],
                    report_interval_s: float = FAILING_REPORT_INTERVAL_S) -> None:
    """Run ``action`` every ``interval_ms`` until cancelled; a failed run is logged and the next one goes on."""
    streak = FailureStreak(name, report_interval_s)
    while True:
        await asyncio.sleep(interval_ms / 1000)
        try:
            result = action()
            if inspect.isawaitable(result):
                await result
        except Exception as error:  # noqa: BLE001 - one run failed; FailureStreak reports it
            streak.failed(error)
        else:
            streak.succeeded()
