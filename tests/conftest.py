"""Fixtures shared by every test folder: real brokers on loopback, unique topic names."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Iterator

import hypothesis_profiles  # noqa: F401 - registers the "default" and "fuzz" profiles, loads $HYPOTHESIS_PROFILE
import pytest
from brokers import BrokerProcess
from rill.client import Admin

_topic_numbers = itertools.count()


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for every test that does not stop it; tests use their own topics."""
    broker = BrokerProcess(tmp_path_factory.mktemp("shared-broker")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of this test's own, which the test may kill and restart."""
    process = BrokerProcess(tmp_path / "broker").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def admin(shared_broker: BrokerProcess) -> Iterator[Admin]:
    with Admin(shared_broker.bootstrap, request_timeout_ms=10_000) as client:
        yield client


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses."""
    return re.sub(r"[^a-zA-Z0-9._-]", "-", f"{request.node.name[:80]}-{next(_topic_numbers)}")
