"""The CI-safe performance guard (``make bench-quick``, also run by ``make test``).

It never compares an absolute time: on a shared or slow machine those say
nothing. Instead, in one process, it measures Rill's produce and consume
throughput on one broker as a RATIO to the client's ceiling (the same
Producer and Consumer against the null broker, ceilings.py), the ceiling
runs interleaved with the real ones, ``--rounds`` short rounds, the best of
each. A machine that is twice as slow slows both sides of the ratio; a
change that makes the broker or the path between client and broker slower
lowers it.

Each ratio is checked against the committed baseline
(loadtest/bench_baseline.json): the guard fails (exit 1) only when a ratio
falls below HALF its baseline twice in a row, a margin wide enough for a
noisy machine and narrow enough to catch a broker that became several times
slower. Record a new baseline (the median of three measurements) with
``make bench-quick BASELINE=write`` (``--write-baseline``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

import ceilings
from bench_clusters import create_topic, running_cluster
from throughput import bench_consume, bench_produce
from workload import Settings, machine

BASELINE_FILE = Path(__file__).with_name("bench_baseline.json")
TOLERANCE = 0.5  # a ratio below this share of its baseline fails the guard
MEASURES = ("produce", "consume")


@dataclass(frozen=True)
class Verdict:
    """One ratio against its baseline."""

    name: str
    ratio: float
    baseline: float

    @property
    def floor(self) -> float:
        return self.baseline * TOLERANCE

    @property
    def ok(self) -> bool:
        return self.ratio >= self.floor

    def __str__(self) -> str:
        outcome = "ok" if self.ok else "REGRESSION"
        return (f"{self.name}: {self.ratio:.3f} of the client ceiling (baseline {self.baseline:.3f}, "
                f"fails below {self.floor:.3f}): {outcome}")


def compare(ratios: dict[str, float], baseline: dict[str, float]) -> list[Verdict]:
    """Each measured ratio against its baseline; ValueError when the baseline lacks one or a number is not
    positive (a guard that cannot compare must not pass)."""
    missing = sorted(set(ratios) - set(baseline))
    if missing:
        raise ValueError(f"the baseline has no ratio for {', '.join(missing)}: record one with --write-baseline")
    for name, value in (*ratios.items(), *baseline.items()):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"ratio {name} must be a positive number, got {value!r}")
    return [Verdict(name, ratios[name], baseline[name]) for name in sorted(ratios)]


def read_baseline(path: Path) -> dict[str, float]:
    """The baseline ratios of ``path``; ValueError when it is missing or malformed."""
    try:
        ratios = json.loads(path.read_text())["ratios"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"no usable baseline in {path}: {error}") from None
    if not isinstance(ratios, dict):
        raise ValueError(f"no usable baseline in {path}: 'ratios' is not an object")
    return ratios


def write_baseline(path: Path, ratios: dict[str, float], note: str) -> None:
    path.write_text(json.dumps({
        "ratios": {name: round(value, 4) for name, value in sorted(ratios.items())},
        "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "note": note,
    }, indent=2) + "\n")


def measure(settings: Settings, rounds: int) -> dict[str, float]:
    """Best Rill records/s over best client-ceiling records/s, produce and consume, on a fresh broker.
    Each round runs a ceiling right before its real run: first the produce rounds, each adding
    ``settings.records`` to one topic, then the consume rounds, each reading all of them (consuming is
    faster: the longer runs keep one scheduling hiccup from deciding the ratio)."""
    best = {name: 0.0 for name in ("produce", "produce ceiling", "consume", "consume ceiling")}
    total = settings.records * rounds
    with tempfile.TemporaryDirectory(prefix="rill-bench-quick-") as folder, \
            running_cluster(Path(folder), 1) as layout, ceilings.null_broker_for(settings) as null:
        create_topic(layout, "quick")
        for _ in range(rounds):
            _best_of(best, "produce ceiling", ceilings.client_produce_ceiling(null, settings))
            _best_of(best, "produce", bench_produce(layout.bootstrap, "quick", settings, "1"))
        for _ in range(rounds):
            _best_of(best, "consume ceiling", ceilings.client_consume_ceiling(null, settings, records=total))
            _best_of(best, "consume", bench_consume(layout.bootstrap, "quick", total))
    return {name: best[name] / best[f"{name} ceiling"] for name in MEASURES}


def _best_of(best: dict[str, float], name: str, rate: float) -> None:
    best[name] = max(best[name], rate)


def median_ratios(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per ratio, the median over several runs (a baseline from one noisy run would set the bar by chance)."""
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


@click.command()
@click.option("--records", default=150_000, show_default=True, help="Records per produce run.")
@click.option("--rounds", default=4, show_default=True, help="Interleaved rounds; the best of each side counts.")
@click.option("--baseline", "baseline_path", type=click.Path(path_type=Path), default=BASELINE_FILE,
              show_default=True)
@click.option("--write-baseline", "write", is_flag=True,
              help="Record the median of --baseline-runs measurements as the baseline.")
@click.option("--baseline-runs", default=3, show_default=True, help="With --write-baseline: measurements to take.")
@click.option("--note", default="", help="With --write-baseline: where and how it was recorded.")
def main(records: int, rounds: int, baseline_path: Path, write: bool, baseline_runs: int, note: str) -> None:
    """Check produce and consume throughput, as ratios to the client's ceiling, against the baseline.
    A ratio below half its baseline is measured once more before the guard fails: a regression shows twice,
    a hiccup of a shared machine seldom does."""
    started = time.monotonic()
    settings = Settings(records=records, value_bytes=100, peer_records=0, batch_size=65536, linger_ms=5,
                        compression="lz4", latency_rates=(), latency_seconds=0, failover_rounds=0, group_rate=0,
                        idempotence_rounds=0)
    if write:
        runs = [measure(settings, rounds) for _ in range(baseline_runs)]
        write_baseline(baseline_path, median_ratios(runs), note)
        click.echo(f"bench-quick: wrote {baseline_path}; runs: "
                   + "; ".join(", ".join(f"{k} {v:.3f}" for k, v in run.items()) for run in runs))
        return
    try:
        baseline = read_baseline(baseline_path)
        verdicts = compare(measure(settings, rounds), baseline)
        if not all(verdict.ok for verdict in verdicts):
            click.echo("bench-quick: " + "; ".join(map(str, verdicts)) + "; measuring again")
            again = measure(settings, rounds)
            verdicts = compare({v.name: max(v.ratio, again[v.name]) for v in verdicts}, baseline)
    except ValueError as error:
        click.echo(f"bench-quick: {error}", err=True)
        sys.exit(2)
    for verdict in verdicts:
        click.echo(f"bench-quick: {verdict}")
    click.echo(f"bench-quick: {records:,} records x {rounds} rounds in {time.monotonic() - started:.0f} s")
    if not all(verdict.ok for verdict in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
