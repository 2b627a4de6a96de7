"""The bench's interleaved rounds, with made-up measurements: each keeps its best, a failure only when all fail."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "loadtest"))

from bench import best_of  # noqa: E402


def test_runs_are_interleaved_and_each_keeps_its_best():
    calls: list[str] = []
    rates = {"ceiling": iter([3.0, 5.0, 4.0]), "rill": iter([1.0, 2.0, 1.5])}

    def run(name: str):
        def measure() -> float:
            calls.append(name)
            return next(rates[name])
        return measure

    where: dict = {}
    best_of(3, [(where, "ceiling", run("ceiling")), (where, "rill", run("rill"))])
    assert calls == ["ceiling", "rill"] * 3
    assert where == {"ceiling": (5.0,), "rill": (2.0,)}


def test_a_measurement_that_always_fails_says_why_and_one_that_fails_once_keeps_its_best():
    outcomes = iter([RuntimeError("hiccup"), 2.0])

    def flaky() -> float:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def broken() -> float:
        raise RuntimeError("no broker")

    where: dict = {}
    best_of(2, [(where, "flaky", flaky), (where, "broken", broken)])
    assert where["flaky"] == (2.0,)
    assert where["broken"].startswith("failed: RuntimeError: no broker")
