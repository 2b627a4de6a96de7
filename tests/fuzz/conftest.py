"""Fixtures of the broker fuzz: one broker per test module, holding data stored before the fuzzing."""

from __future__ import annotations

from typing import Iterator

import hypothesis_profiles  # noqa: F401 - registers and loads the profile HYPOTHESIS_PROFILE names
import pytest

from fuzz.target import FuzzTarget


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    target = FuzzTarget(tmp_path_factory.mktemp("fuzz-broker")).start()
    try:
        yield target
    finally:
        target.close()
