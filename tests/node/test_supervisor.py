"""The task supervisor (node/supervisor.py) on an asyncio loop: a long-running task that dies stops the node,
loudly; periodic duties log their failures and go on. The process-level test is in test_garbage_burst.py."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest
from rill.node.supervisor import (
    FATAL_EXIT_CODE,
    FailureStreak,
    TaskSupervisor,
    run_every,
)


class Stopper:
    """Stands in for the node: counts the stop requests the supervisor makes."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


async def crash(message: str = "boom") -> None:
    await asyncio.sleep(0)
    raise RuntimeError(message)


async def forever() -> None:
    await asyncio.Event().wait()


async def settle() -> None:
    """Let finished tasks run their done callbacks."""
    for _ in range(5):
        await asyncio.sleep(0)


def supervised(coroutine_factory, *, may_return: bool = False, stopping: bool = False):
    """Run one supervised task to its end; the supervisor and the node stand-in afterwards."""
    stopper = Stopper()
    supervisor = TaskSupervisor(stopper, stop_grace_s=60)

    async def main() -> None:
        if stopping:
            supervisor.stopping()
        task = supervisor.start("worker", coroutine_factory(), may_return=may_return)
        await asyncio.wait([task])
        await settle()

    try:
        asyncio.run(main())
    finally:
        supervisor.close()
    return supervisor, stopper


def test_a_task_that_raises_stops_the_node_with_a_critical_traceback(caplog):
    with caplog.at_level(logging.CRITICAL, logger="rill.node.supervisor"):
        supervisor, stopper = supervised(lambda: crash("the loop hit a bug"))
    assert stopper.calls == 1
    assert supervisor.failure == "task 'worker' died: RuntimeError('the loop hit a bug')"
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "stopping the node" in record.getMessage()
    assert record.exc_info is not None and "the loop hit a bug" in caplog.text, "the traceback is logged"


def test_a_task_that_returns_while_it_must_run_stops_the_node():
    async def returns() -> None:
        await asyncio.sleep(0)

    supervisor, stopper = supervised(returns)
    assert stopper.calls == 1
    assert "must run as long as the node does" in supervisor.failure


def test_a_task_that_may_return_does_so_quietly_but_may_not_raise():
    async def returns() -> None:
        await asyncio.sleep(0)

    supervisor, stopper = supervised(returns, may_return=True)
    assert (supervisor.failure, stopper.calls) == (None, 0)
    supervisor, stopper = supervised(crash, may_return=True)
    assert stopper.calls == 1 and "RuntimeError('boom')" in supervisor.failure


def test_cancelled_tasks_are_no_failure():
    stopper = Stopper()
    supervisor = TaskSupervisor(stopper, stop_grace_s=60)

    async def main() -> None:
        task = supervisor.start("worker", forever())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task])
        await settle()

    asyncio.run(main())
    supervisor.close()
    assert (supervisor.failure, stopper.calls) == (None, 0)


def test_a_task_failing_while_the_node_stops_is_logged_but_stops_nothing(caplog):
    with caplog.at_level(logging.ERROR, logger="rill.node.supervisor"):
        supervisor, stopper = supervised(crash, stopping=True)
    assert (supervisor.failure, stopper.calls) == (None, 0)
    assert "failed while the node stops" in caplog.text and "RuntimeError: boom" in caplog.text


def test_two_dying_tasks_stop_the_node_once():
    stopper = Stopper()
    supervisor = TaskSupervisor(stopper, stop_grace_s=60)

    async def main() -> None:
        tasks = [supervisor.start("first", crash("first")), supervisor.start("second", crash("second"))]
        await asyncio.wait(tasks)
        await settle()

    asyncio.run(main())
    supervisor.close()
    assert stopper.calls == 1 and supervisor.failure.startswith("task 'first' died")


def test_the_watchdog_ends_a_process_whose_stop_hangs():
    """A node that cannot stop in order after a fatal failure is ended anyway, with the fatal exit code."""
    script = textwrap.dedent("""
        import asyncio, logging, sys
        from rill.node.supervisor import TaskSupervisor

        logging.basicConfig(stream=sys.stderr, level=logging.INFO)

        async def crash():
            raise RuntimeError("injected")

        async def main():
            supervisor = TaskSupervisor(lambda: None, stop_grace_s=0.2)  # the stop request goes nowhere
            supervisor.start("worker", crash())
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert finished.returncode == FATAL_EXIT_CODE, finished.stderr
    assert "did not stop within 0 s" in finished.stderr and "exiting now" in finished.stderr


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_duty_is_reported_first_with_its_traceback_then_once_per_interval(caplog):
    clock = FakeClock()
    streak = FailureStreak("retention", report_interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="rill.node.supervisor"):
        for step in range(10):  # 10 failures, 10 s apart: reported at the first and after 60 s
            clock.now = 100.0 + 10 * step
            streak.failed(OSError(f"disk gone {step}"))
        streak.succeeded()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3, messages
    assert "periodic task retention failed" in messages[0] and caplog.records[0].exc_info[1].args == ("disk gone 0",)
    assert "has failed 7 runs in a row, for 60 s" in messages[1] and caplog.records[1].exc_info[1].args == (
        "disk gone 6",)
    assert messages[2] == "periodic task retention works again after 10 failed runs"


def test_run_every_goes_on_after_failed_runs(caplog):
    failures = [OSError("first"), OSError("second")]
    ran = []

    def action() -> None:
        ran.append(1)
        if failures:
            raise failures.pop(0)

    async def main() -> None:
        task = asyncio.ensure_future(run_every("flush", 1, action))
        while len(ran) < 4:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="rill.node.supervisor"):
        asyncio.run(main())
    assert len(ran) >= 4
    assert "periodic task flush failed" in caplog.text and "works again after 2 failed runs" in caplog.text
