"""Fixtures for the log layer tests: a settable clock and a factory that opens a partition log."""

from __future__ import annotations

from pathlib import Path

import pytest
from rill.node.log.config import LogConfig
from rill.node.log.log import Log


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log_directory(tmp_path: Path) -> Path:
    return tmp_path / "orders-0"


@pytest.fixture
def open_log(log_directory: Path, clock: FakeClock):
    """open_log(**config) opens (or reopens) the partition log in log_directory with the fake clock;
    ``clean_shutdown=True`` opens it as the LogManager does after a clean shutdown."""

    def open_with(clean_shutdown: bool = False, **config) -> Log:
        return Log(log_directory, LogConfig(**config), clock_ms=clock, clean_shutdown=clean_shutdown)

    return open_with
