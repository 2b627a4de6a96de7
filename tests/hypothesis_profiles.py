"""Hypothesis settings profiles, chosen by the HYPOTHESIS_PROFILE environment variable.

"default": few examples, so property tests stay fast in the normal suite (tests talk to real brokers,
so no per-example deadline), derandomized (the same examples every run, so CI is deterministic). "fuzz": many examples, for a long hunt, e.g.
``HYPOTHESIS_PROFILE=fuzz pytest tests/client/test_api_fuzz.py``. Importing this module registers both
and loads the chosen one; test modules that use hypothesis import it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
