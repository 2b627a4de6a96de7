"""The bench-quick guard's verdicts, with made-up ratios: only a ratio below half its baseline fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "loadtest"))

import bench_quick  # noqa: E402 - loadtest/ is not a package: its modules import each other by name


def test_a_ratio_at_or_above_half_its_baseline_passes_and_below_fails():
    verdicts = bench_quick.compare({"produce": 0.30, "consume": 0.45}, {"produce": 0.60, "consume": 0.91})
    assert [(verdict.name, verdict.ok) for verdict in verdicts] == [("consume", False), ("produce", True)]
    assert verdicts[0].floor == pytest.approx(0.455)
    assert "REGRESSION" in str(verdicts[0]) and "ok" in str(verdicts[1])


def test_a_ratio_above_its_baseline_passes():
    (verdict,) = bench_quick.compare({"produce": 1.4}, {"produce": 0.6, "consume": 0.9})
    assert verdict.ok


@pytest.mark.parametrize("ratios, baseline", [
    ({"produce": 0.5, "fetch": 0.5}, {"produce": 0.6}),  # no baseline for a measured ratio
    ({"produce": 0.0}, {"produce": 0.6}),
    ({"produce": 0.5}, {"produce": "0.6"}),
    ({"produce": float("nan")}, {"produce": 0.6}),
])
def test_a_guard_that_cannot_compare_raises_instead_of_passing(ratios, baseline):
    with pytest.raises(ValueError):
        bench_quick.compare(ratios, baseline)


def test_the_baseline_file_round_trips_and_a_malformed_one_is_refused(tmp_path: Path):
    path = tmp_path / "baseline.json"
    bench_quick.write_baseline(path, {"produce": 0.61234, "consume": 0.9}, "a test")
    assert bench_quick.read_baseline(path) == {"consume": 0.9, "produce": 0.6123}
    assert json.loads(path.read_text())["note"] == "a test"
    for text in ("", "[]", '{"ratios": 3}', '{"other": {}}'):
        path.write_text(text)
        with pytest.raises(ValueError):
            bench_quick.read_baseline(path)
    with pytest.raises(ValueError):
        bench_quick.read_baseline(tmp_path / "missing.json")


def test_the_committed_baseline_has_every_ratio_the_guard_measures():
    assert set(bench_quick.read_baseline(bench_quick.BASELINE_FILE)) == set(bench_quick.MEASURES)


def test_the_baseline_is_the_median_of_its_runs():
    runs = [{"produce": 0.9, "consume": 0.5}, {"produce": 0.6, "consume": 1.4}, {"produce": 0.7, "consume": 0.8}]
    assert bench_quick.median_ratios(runs) == {"produce": 0.7, "consume": 0.8}
