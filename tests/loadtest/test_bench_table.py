"""The bench table's ratios, with made-up numbers: shares of the ceilings, and >1 meaning Rill is better."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "loadtest"))

from bench_table import LATENCY, SECONDS, THROUGHPUT, Row, against_peer, of_ceiling  # noqa: E402


def test_throughput_is_rill_over_the_ceiling_and_over_the_peer():
    row = Row("produce", "", THROUGHPUT, (300_000.0,), (600_000.0,), (1_200_000.0,), {"Redis": (100_000.0,)})
    assert of_ceiling(row, row.client_ceiling) == "50% of 600,000/s"
    assert of_ceiling(row, row.broker_ceiling) == "25% of 1,200,000/s"
    assert against_peer(row, "Redis") == "x3.00 (100,000/s)"


def test_latency_and_failover_are_peer_over_rill_so_that_above_one_means_rill_is_better():
    latency = Row("latency", "", LATENCY, (1.0, 4.0), peers={"NATS": (2.0, 2.0)})
    assert against_peer(latency, "NATS") == "p50 x2.00, p99 x0.50 (p50 2.00 / p99 2.00 ms)"
    failover = Row("failover", "", SECONDS, (0.5,), peers={"NATS": (5.0,)})
    assert against_peer(failover, "NATS") == "x10.00 (5.00 s)"


def test_a_missing_measurement_shows_why():
    row = Row("keyed", "", THROUGHPUT, (1.0,), None, "failed: boom", {"Redis": "not installed (make bench-peers)"})
    assert of_ceiling(row, row.client_ceiling) == ""
    assert of_ceiling(row, row.broker_ceiling) == "failed: boom"
    assert against_peer(row, "Redis") == "not installed (make bench-peers)"
    assert against_peer(row, "NATS") == "n/a"
    assert against_peer(Row("x", "", THROUGHPUT, "failed: x", peers={"NATS": (1.0,)}), "NATS") == "-"


def test_the_idle_partition_table_compares_each_count_with_none_and_shows_a_failed_count():
    from bench_table import idle_table
    from rich.console import Console

    console = Console(width=300, record=True)
    console.print(idle_table([
        {"idle_partitions": 0, "create_s": 0.1, "hot_records_per_s": 200_000.0, "idle_cpu_per_s": 0.01,
         "restart_to_full_isr_s": 2.0},
        {"idle_partitions": 1000, "create_s": 9.0, "hot_records_per_s": 150_000.0, "idle_cpu_per_s": 0.2,
         "restart_to_full_isr_s": 20.0},
        {"idle_partitions": 10000, "failed": "failed: UsageError: too many open files"}]))
    text = console.export_text()
    assert "x0.75" in text and "x1.00" in text and "too many open files" in text and "150,000" in text
