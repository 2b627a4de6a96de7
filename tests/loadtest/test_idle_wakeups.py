"""The idle breakdown's arithmetic, with made-up thread samples: CPU and wake-ups per second by kind of thread."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "loadtest"))

from idle_wakeups import ThreadSample, sample_threads, usage  # noqa: E402


def test_usage_sums_each_kind_of_thread_per_second_and_skips_threads_born_meanwhile():
    before = {100: ThreadSample("python", 1.0, 10), 101: ThreadSample("ZMQbg/IO/0", 0.5, 5),
              102: ThreadSample("python", 2.0, 100)}
    after = {100: ThreadSample("python", 1.2, 110), 101: ThreadSample("ZMQbg/IO/0", 0.5, 25),
             102: ThreadSample("python", 2.4, 500), 103: ThreadSample("python", 9.0, 9)}
    assert usage(100, before, after, 2.0) == {
        "loop": {"cpu_per_s": 0.1, "wakeups_per_s": 50.0},
        "raft": {"cpu_per_s": 0.2, "wakeups_per_s": 200.0},
        "zmq": {"cpu_per_s": 0.0, "wakeups_per_s": 10.0},
    }


def test_this_process_has_a_sample_of_its_own_main_thread():
    samples = sample_threads(os.getpid())
    assert os.getpid() in samples and samples[os.getpid()].cpu_s > 0
