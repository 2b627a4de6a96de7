"""Fixtures of the consumer group tests: one 3-broker cluster per module, and member processes."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from brokers import ClusterProcesses
from group_members import ConsumerProcess


@pytest.fixture(scope="module")
def group_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcesses]:
    """Three brokers shared by a module's tests; each test uses its own topic and group."""
    processes = ClusterProcesses(tmp_path_factory.mktemp("group-cluster"), 3)
    try:
        processes.start_all()
        yield processes
    finally:
        processes.stop_all(timeout_s=10)


@pytest.fixture
def consumer_processes(tmp_path: Path) -> Iterator[callable]:
    """Starts ConsumerProcess objects; every one still running is stopped after the test."""
    started: list[ConsumerProcess] = []

    def start(bootstrap: str, group: str, topic: str) -> ConsumerProcess:
        process = ConsumerProcess(bootstrap, group, topic, tmp_path / f"consumer-{len(started)}.out")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
