"""The Locust load test runs headless against a real broker: publishers and group members, no failures."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).parents[2] / "loadtest" / "locustfile.py"


def test_locust_publishes_and_consumes_without_failures(shared_broker, tmp_path: Path):
    prefix = tmp_path / "run"
    finished = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--users", "4", "--spawn-rate", "4",
         "--run-time", "6s", "--host", shared_broker.bootstrap, "--only-summary", "--csv", str(prefix)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as stats:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats)}
    produced = rows[("produce", "locust-orders")]
    consumed = rows[("consume", "locust-readers")]
    assert int(produced["Request Count"]) > 0 and int(produced["Failure Count"]) == 0
    assert int(consumed["Request Count"]) > 0 and int(consumed["Failure Count"]) == 0
