"""How many cases each fuzz test runs: a fast subset in `make test`, FUZZ_CASES in all in `make fuzz`.

The module's hypothesis tests share a budget evenly: with
HYPOTHESIS_PROFILE=fuzz, FUZZ_CASES (default 100,000; `make fuzz
FUZZ_CASES=20000` for a shorter hunt); otherwise TEST_CASES (a few seconds
of derandomized cases), but never fewer than the profile's max_examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

FUZZ_CASES_DEFAULT = 100_000
TEST_CASES = 1_500


def examples_each(tests: int) -> int:
    """max_examples for each of ``tests`` hypothesis tests."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
        total = int(os.environ.get("FUZZ_CASES", FUZZ_CASES_DEFAULT))
    else:
        total = TEST_CASES
    return max(settings().max_examples, -(-total // tests))
