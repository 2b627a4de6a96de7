"""Fixtures of the failover tests: a fresh 3-node cluster per test, its logs attached to failures."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from brokers import ClusterProcesses

# The brokers run with the default settings unless a test marks others (cluster_settings).
CLUSTER_SETTINGS: dict[str, object] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On failure, attach the output of every broker of the test's cluster to the report."""
    outcome = yield
    report = outcome.get_result()
    processes = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and isinstance(processes, ClusterProcesses):
        report.sections.append(("broker output", processes.outputs()))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster_settings(**settings): node config keys for the cluster fixture")


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ClusterProcesses]:
    """Three brokers on loopback, started and answering; afterwards every process is stopped by pid
    (SIGTERM and SIGCONT, SIGKILL if still running 10 s later).

    A test may set node config keys with ``@pytest.mark.cluster_settings(key=value)``.
    """
    marker = request.node.get_closest_marker("cluster_settings")
    settings = {**CLUSTER_SETTINGS, **(marker.kwargs if marker else {})}
    processes = ClusterProcesses(tmp_path / "cluster", 3, settings=settings)
    try:
        processes.start_all()
        yield processes
    finally:
        processes.stop_all(timeout_s=10)
