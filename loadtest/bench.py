"""Rill benchmark: Rill against its own ceilings and against its peers, in one run, as ratios.

Run with ``make bench`` (``make bench-peers`` first installs Redis and NATS),
or ``.venv/bin/python loadtest/bench.py --help`` for the knobs; ``--sections``
picks parts of it. One run starts everything it measures on free loopback
ports in a temporary folder and stops it by pid:

- ceilings (ceilings.py): the client's, Rill's Producer and Consumer against
  a null broker that stores nothing; the broker's, a raw client keeping
  pre-encoded requests in flight. Each is measured right before the Rill
  run it bounds, so both see the same machine;
- Rill end to end: one broker (produce, consume, keyed produce next to
  unkeyed over 4 partitions, 4-partition consume, latency at each
  ``--latency-rates``, idempotence off and on), then three brokers (RF=3
  acks=all, latency, failover, a consumer group of three and its
  rebalances); each broker's event-loop lag after each run;
- the bulk calls (bulk_bench.py): send_many against send, poll_batch
  against poll, on one broker;
- peers (peers.py): Redis Streams and NATS JetStream where installed, the
  same values, counts and rates;
- the cost of idle partitions (partition_scale.py), for ``--idle-partitions``.

It prints the parameters and the machine, the ratio table (bench_table.py),
the event-loop lag table and the idle-partition table.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

import ceilings
import click
import peers
from bench_clusters import LagRow, create_topic, note_loop_lag, running_cluster
from bench_table import (
    LATENCY,
    NOT_APPLICABLE,
    RATIO,
    SECONDS,
    THROUGHPUT,
    Outcome,
    Row,
    idle_table,
    lag_table,
    ratio_table,
)
from bulk_bench import bench_bulk
from failover import bench_failover
from group_bench import SESSION_TIMEOUT_MS, bench_group
from latency import rill_latency
from peer_servers import (
    NOT_INSTALLED,
    nats_installed,
    nats_servers,
    redis_installed,
    redis_server,
)
from rich.console import Console
from rill.cluster.layout import ClusterLayout
from throughput import KEY_COUNT, bench_consume, bench_produce
from workload import Settings, machine, make_values

SECTIONS = ("single", "replicated", "group", "bulk", "peers", "idle")
PEERS = ("Redis", "NATS")
PARTITIONS = 4  # of the keyed produce and multi-partition consume runs
NOT_AVAILABLE = "not available"


def attempt(measure: Callable[[], Outcome | float], *, scalar: bool = True) -> Outcome:
    """Run one measurement; its numbers as a tuple, or "failed: ..." (the rest of the bench goes on)."""
    try:
        result = measure()
    except Exception as error:  # noqa: BLE001 - one broken measurement must not lose the whole run
        traceback.print_exc()
        return f"failed: {type(error).__name__}: {error}"[:200]
    return (result,) if scalar else tuple(result)


class Results:
    """Every outcome of the run, by row id: Rill's, the ceilings' and each peer's."""

    def __init__(self) -> None:
        self.rill: dict[str, Outcome] = {}
        self.client: dict[str, Outcome] = {}
        self.broker: dict[str, Outcome] = {}
        self.peers: dict[str, dict[str, Outcome]] = {peer: {} for peer in PEERS}
        self.extra_rows: list[Row] = []
        self.lags: list[LagRow] = []


def best_of(rounds: int, runs: list[tuple[dict[str, Outcome], str, Callable[[], float]]]) -> None:
    """Run each (where, key, measure) ``rounds`` times, interleaved (each once, then each again, ...), and
    keep its best in ``where[key]``: a ceiling and the Rill run it bounds see the same machine, and a
    hiccup of a shared machine costs one run, not the result."""
    best: list[list[float]] = [[] for _ in runs]
    failures: dict[int, Outcome] = {}
    for _ in range(rounds):
        for index, (_, _, run) in enumerate(runs):
            outcome = attempt(run)
            if isinstance(outcome, tuple):
                best[index].append(outcome[0])
            else:
                failures[index] = outcome
    for index, (where, key, _) in enumerate(runs):
        where[key] = (max(best[index]),) if best[index] else failures[index]


def single_broker(layout: ClusterLayout, settings: Settings, results: Results) -> None:
    """Rill on one broker, each run interleaved with its ceilings."""
    bootstrap, records, rounds = layout.bootstrap, settings.records, settings.rounds
    raw1 = create_topic(layout, "raw-1")
    raw4 = create_topic(layout, "raw-4", partitions=PARTITIONS)
    for topic, partitions in (("bench-1", 1), ("bench-keyed", PARTITIONS), ("bench-unkeyed", PARTITIONS)):
        create_topic(layout, topic, partitions=partitions)
    client, rill, broker = results.client, results.rill, results.broker
    with ceilings.null_broker_for(settings) as null:
        best_of(rounds, [
            (client, "produce", lambda: ceilings.client_produce_ceiling(null, settings)),
            (rill, "produce", lambda: bench_produce(bootstrap, "bench-1", settings, "1")),
            (broker, "produce", lambda: ceilings.broker_produce_ceiling(raw1, "raw-1", settings, 1))])
        note_loop_lag(layout, "produce", results.lags)
        best_of(rounds, [
            (client, "consume", lambda: ceilings.client_consume_ceiling(null, settings)),
            (rill, "consume", lambda: bench_consume(bootstrap, "bench-1", records)),
            (broker, "consume", lambda: ceilings.broker_fetch_ceiling(raw1, "raw-1", settings))])
        note_loop_lag(layout, "consume", results.lags)
        best_of(rounds, [
            (client, "keyed", lambda: ceilings.client_produce_ceiling(null, settings, partitions=PARTITIONS,
                                                                      keyed=True)),
            (rill, "keyed", lambda: bench_produce(bootstrap, "bench-keyed", settings, "1", keyed=True)),
            (rill, "unkeyed4", lambda: bench_produce(bootstrap, "bench-unkeyed", settings, "1")),
            (broker, "keyed", lambda: ceilings.broker_produce_ceiling(raw4, "raw-4", settings, 1,
                                                                      partitions=PARTITIONS))])
        note_loop_lag(layout, f"keyed and unkeyed produce, {PARTITIONS} partitions", results.lags)
        best_of(rounds, [
            (client, "consume4", lambda: ceilings.client_consume_ceiling(null, settings, partitions=PARTITIONS)),
            (rill, "consume4", lambda: bench_consume(bootstrap, "bench-unkeyed", records)),
            (broker, "consume4", lambda: ceilings.broker_fetch_ceiling(raw4, "raw-4", settings,
                                                                       partitions=PARTITIONS))])
        note_loop_lag(layout, f"consume, {PARTITIONS} partitions", results.lags)
    latencies(layout, settings, results, brokers=1)
    results.extra_rows.append(idempotence_row(layout, settings, results))


def latencies(layout: ClusterLayout, settings: Settings, results: Results, brokers: int) -> None:
    for rate in settings.latency_rates:
        topic = f"bench-latency-{rate}"
        create_topic(layout, topic, replication_factor=brokers)
        results.rill[f"latency {brokers} {rate}"] = attempt(lambda: rill_latency(
            layout.bootstrap, topic, rate, settings.latency_seconds, settings.value_bytes, "all",
            settings.compression)[:2], scalar=False)
        note_loop_lag(layout, f"latency at {rate:,} records/s, {brokers} broker(s)", results.lags)


def idempotence_row(layout: ClusterLayout, settings: Settings, results: Results) -> Row:
    """Idempotence on / off (acks=all, one broker, the best of each over interleaved rounds)."""
    create_topic(layout, "bench-idempotence")
    best: dict[str, Outcome] = {}
    best_of(settings.idempotence_rounds, [
        (best, "off", lambda: bench_produce(layout.bootstrap, "bench-idempotence", settings, "all",
                                            idempotence=False)),
        (best, "on", lambda: bench_produce(layout.bootstrap, "bench-idempotence", settings, "all"))])
    note_loop_lag(layout, "produce, idempotence off and on", results.lags)
    off, on = best["off"], best["on"]
    outcome = (on[0] / off[0],) if isinstance(on, tuple) and isinstance(off, tuple) else "failed (see above)"
    return Row("idempotence on vs off", f"acks=all, 1 broker, best of {settings.idempotence_rounds} each, "
               "interleaved", RATIO, outcome)


def bulk_rows(layout: ClusterLayout, settings: Settings) -> list[Row]:
    """send_many / send and poll_batch / poll (bulk_bench.py), with the run's batch_size for both."""
    pairs = (("send_many", "send"), ("poll_batch", "poll"))
    how = "records/s of the one / of the other, 1 broker, 1 partition"
    create_topic(layout, "bench-bulk")
    try:
        rates = bench_bulk(layout.bootstrap, "bench-bulk", settings.records, settings.value_bytes,
                           batch_size=settings.batch_size)
    except Exception as error:  # noqa: BLE001 - as attempt()
        traceback.print_exc()
        return [Row(f"{bulk} vs {single}", how, RATIO, f"failed: {type(error).__name__}: {error}"[:200])
                for bulk, single in pairs]
    return [Row(f"{bulk} vs {single}", how, RATIO, (rates[bulk] / rates[single],)) for bulk, single in pairs]


def replicated(layout: ClusterLayout, settings: Settings, results: Results, sections: set[str]) -> None:
    """Rill on three brokers: RF=3 acks=all next to its ceilings, latency, failover, the consumer group."""
    leader = create_topic(layout, "raw-rf3", replication_factor=3)
    create_topic(layout, "bench-rf3", replication_factor=3)
    with ceilings.null_broker_for(settings) as null:
        best_of(settings.rounds, [
            (results.client, "rf3", lambda: ceilings.client_produce_ceiling(null, settings, acks="all")),
            (results.rill, "rf3", lambda: bench_produce(layout.bootstrap, "bench-rf3", settings, "all")),
            (results.broker, "rf3", lambda: ceilings.broker_produce_ceiling(leader, "raw-rf3", settings, -1))])
    note_loop_lag(layout, "produce, 3 brokers, RF=3, acks=all", results.lags)
    latencies(layout, settings, results, brokers=3)
    if settings.failover_rounds:
        results.rill["failover"] = attempt(
            lambda: statistics.median(bench_failover(layout, settings.failover_rounds)))
        note_loop_lag(layout, "failover (the killed broker restarted: its lag is since then)", results.lags)
    if "group" in sections:
        results.extra_rows += group_rows(layout, settings, results.lags)


def group_rows(layout: ClusterLayout, settings: Settings, lags: list[LagRow]) -> list[Row]:
    try:
        group = bench_group(layout.bootstrap, settings.records, make_values(1_000, settings.value_bytes),
                            settings.group_rate)
    except Exception as error:  # noqa: BLE001 - as attempt(): report it, go on
        traceback.print_exc()
        return [Row("consumer group of 3", "", THROUGHPUT, f"failed: {error}"[:200])]
    note_loop_lag(layout, "consumer group of 3", lags)
    return [
        Row("consumer group of 3, RF=3", "3 member processes, 6 partitions, aggregate", THROUGHPUT,
            (group.records_per_s,)),
        Row("join rebalance", f"a third member joins 2 reading {settings.group_rate:,} records/s; "
            f"old members' longest pause {group.join_pause_ms:.0f} ms (before: {group.steady_gap_ms:.0f} ms)",
            SECONDS, (group.join_s,)),
        Row("crash rebalance", f"kill -9 of 1 of 3, session timeout {SESSION_TIMEOUT_MS / 1000:g} s", SECONDS,
            (group.crash_s,)),
    ]


def redis_runs(folder: Path, settings: Settings, outcomes: dict[str, Outcome]) -> None:
    records = settings.peer_records
    streams = [f"keyed-{number}" for number in range(PARTITIONS)]
    with redis_server(folder / "redis") as port:
        outcomes["produce"] = attempt(lambda: peers.redis_produce(port, ["orders"], settings.value_bytes, records))
        outcomes["consume"] = attempt(lambda: peers.redis_consume(port, ["orders"], records))
        outcomes["keyed"] = attempt(
            lambda: peers.redis_produce(port, streams, settings.value_bytes, records, keyed=True))
        outcomes["consume4"] = attempt(lambda: peers.redis_consume(port, streams, records))
        for rate in settings.latency_rates:
            outcomes[f"latency 1 {rate}"] = attempt(lambda: peers.redis_latency(
                port, f"latency-{rate}", rate, settings.latency_seconds, settings.value_bytes)[:2], scalar=False)


def nats_runs(folder: Path, settings: Settings, outcomes: dict[str, Outcome], replicated_too: bool) -> None:
    records = settings.peer_records
    with nats_servers(folder / "nats-1", 1) as server:
        peers.create_nats_stream(server.urls, "ORDERS", 1)
        outcomes["produce"] = attempt(lambda: peers.nats_produce(server.urls, "ORDERS", settings.value_bytes,
                                                                 records))
        outcomes["consume"] = attempt(lambda: peers.nats_consume(server.urls, "ORDERS", records))
        for rate in settings.latency_rates:
            peers.create_nats_stream(server.urls, f"LATENCY{rate}", 1)
            outcomes[f"latency 1 {rate}"] = attempt(lambda: peers.nats_latency(
                server.urls, f"LATENCY{rate}", rate, settings.latency_seconds, settings.value_bytes)[:2],
                scalar=False)
    if not replicated_too:
        return
    with nats_servers(folder / "nats-3", 3) as cluster:
        peers.create_nats_stream(cluster.urls, "ORDERS", 3)
        outcomes["rf3"] = attempt(lambda: peers.nats_produce(cluster.urls, "ORDERS", settings.value_bytes, records))
        for rate in settings.latency_rates:
            peers.create_nats_stream(cluster.urls, f"LATENCY{rate}", 3)
            outcomes[f"latency 3 {rate}"] = attempt(lambda: peers.nats_latency(
                cluster.urls, f"LATENCY{rate}", rate, settings.latency_seconds, settings.value_bytes)[:2],
                scalar=False)
        if settings.failover_rounds:
            outcomes["failover"] = attempt(lambda: peers.nats_failover(cluster, "ORDERS"))


def peer_runs(folder: Path, settings: Settings, results: Results, replicated_too: bool) -> None:
    """Each installed peer's runs; a peer not installed, or whose server would not start, says so in its column
    (the "*" outcome stands for every row)."""
    for peer, installed in (("Redis", redis_installed), ("NATS", nats_installed)):
        outcomes = results.peers[peer]
        if not installed():
            outcomes["*"] = NOT_INSTALLED
            continue
        try:
            if peer == "Redis":
                redis_runs(folder, settings, outcomes)
            else:
                nats_runs(folder, settings, outcomes, replicated_too)
        except Exception as error:  # noqa: BLE001 - as attempt()
            traceback.print_exc()
            outcomes["*"] = f"failed: {type(error).__name__}: {error}"[:200]


def table_rows(settings: Settings, results: Results) -> list[Row]:
    """The headline rows, in order, from what was measured (rows of sections not run are left out)."""
    acks_all = "acks=all, idempotent, min ISR 2"
    specs = [
        ("produce", "produce, 1 broker", "acks=1, 1 partition, send() loop, flush()", THROUGHPUT, "produce"),
        ("consume", "consume, 1 broker", "from offset 0, 1 partition", THROUGHPUT, "consume"),
        ("keyed", f"keyed produce, {PARTITIONS} partitions", f"acks=1, {KEY_COUNT:,} distinct keys"
         f"{_next_to(results, 'keyed', 'unkeyed4', 'unkeyed')}", THROUGHPUT, "keyed"),
        ("unkeyed4", f"unkeyed produce, {PARTITIONS} partitions", "acks=1", THROUGHPUT, None),
        ("consume4", f"consume, {PARTITIONS} partitions",
         "from offset 0" + _next_to(results, "consume4", "consume", "1 partition"), THROUGHPUT, "consume4"),
        ("rf3", "produce, 3 brokers, RF=3", acks_all, THROUGHPUT, "rf3"),
    ]
    for brokers in (1, 3):
        for rate in settings.latency_rates:
            where = "1 broker" if brokers == 1 else "3 brokers, RF=3"
            specs.append((f"latency {brokers} {rate}", f"latency at {rate:,}/s, {where}",
                          "acks=all, linger_ms=0", LATENCY, None))
    specs.append(("failover", "failover, 3 brokers, RF=3",
                  f"kill -9 of the leader; Rill: median of {settings.failover_rounds}, NATS: 1 kill", SECONDS, None))
    rows = []
    for row_id, name, how, unit, ceiling_id in specs:
        if row_id not in results.rill:
            continue
        rows.append(Row(name, how, unit, results.rill[row_id],
                        results.client.get(ceiling_id) if ceiling_id else None,
                        results.broker.get(ceiling_id) if ceiling_id else None,
                        {peer: outcomes.get("*", outcomes.get(row_id, NOT_APPLICABLE))
                         for peer, outcomes in results.peers.items() if outcomes}))
    return rows + results.extra_rows


def _next_to(results: Results, row_id: str, other_id: str, other: str) -> str:
    """", x0.93 of <other>" when both were measured."""
    mine, theirs = results.rill.get(row_id), results.rill.get(other_id)
    if isinstance(mine, tuple) and isinstance(theirs, tuple):
        return f"; x{mine[0] / theirs[0]:.2f} of {other}"
    return ""


def idle_partition_results(folder: Path, counts: list[int], records: int, value_bytes: int) -> list[dict] | str:
    """partition_scale's measurements, one count at a time so that a count the machine cannot take (open
    files, memory) fails alone: its line then says why ({"idle_partitions": n, "failed": ...})."""
    try:
        from partition_scale import bench_idle_partitions
    except ImportError:
        return NOT_AVAILABLE
    results = []
    for count in counts:
        try:
            results += bench_idle_partitions(folder / str(count), [count], records, value_bytes)
        except Exception as error:  # noqa: BLE001 - as attempt(); click's UsageError is one too
            traceback.print_exc()
            results.append({"idle_partitions": count, "failed": f"failed: {type(error).__name__}: {error}"[:200]})
    return results


def report(settings: Settings, sections: set[str], results: Results, idle: list[dict] | str | None) -> None:
    console = Console(width=200)
    console.print(f"machine: {machine()}; every server and client on loopback, sharing those cores")
    console.print(f"parameters: {settings.records:,} records of {settings.value_bytes} B (JSON order events), "
                  f"batch_size={settings.batch_size}, linger_ms={settings.linger_ms}, "
                  f"compression={settings.compression}, one producer process, best of {settings.rounds} "
                  f"interleaved rounds; peers: {settings.peer_records:,} "
                  f"records; latency "
                  f"{settings.latency_seconds:g} s at each rate; sections: {', '.join(sorted(sections))}")
    console.print("ceilings: client = Rill's Producer/Consumer against a broker that stores nothing; "
                  "broker = a raw client keeping pre-encoded requests in flight (acks=1, or acks=all for RF=3)")
    console.print("latency: one producer sending at the rate without waiting, one consumer in a group in a second "
                  "process; failover: kill -9 of the partition leader until the first write sent after it is "
                  "acknowledged (acks=all); peers: loadtest/peers.py")
    console.print(ratio_table(table_rows(settings, results), [p for p in PEERS if results.peers[p]]))
    console.print(lag_table(results.lags))
    if idle is not None:
        console.print(idle_table(idle))


@click.command()
@click.option("--records", default=1_000_000, show_default=True, help="Records for the throughput runs.")
@click.option("--value-bytes", default=100, show_default=True)
@click.option("--batch-size", default=65536, show_default=True)
@click.option("--linger-ms", default=5, show_default=True)
@click.option("--compression", default="lz4", show_default=True, type=click.Choice(["lz4", "none"]))
@click.option("--peer-records", default=200_000, show_default=True,
              help="Records for the peers' throughput runs (rates are per second: the slower peers need fewer).")
@click.option("--latency-rates", default="2000,10000", show_default=True, help="Records/s of the latency runs.")
@click.option("--latency-seconds", default=10.0, show_default=True)
@click.option("--failover-rounds", default=5, show_default=True, help="Leader kills to time (0: none).")
@click.option("--group-rate", default=20_000, show_default=True, help="Records/s during the rebalance runs.")
@click.option("--idempotence-rounds", default=3, show_default=True,
              help="Interleaved produce runs with idempotence off and on (acks=all, 1 broker).")
@click.option("--rounds", default=3, show_default=True,
              help="Throughput runs of each kind, interleaved with their ceilings; the best of each counts.")
@click.option("--sections", default=",".join(SECTIONS), show_default=True,
              help=f"Comma-separated parts to run, of: {', '.join(SECTIONS)}.")
@click.option("--idle-partitions", default="0,1000,3000,10000", show_default=True,
              help="Idle partition counts of the idle-partition table (10,000 takes minutes).")
@click.option("--idle-records", default=200_000, show_default=True,
              help="Records into the hot partition at each idle partition count.")
def main(latency_rates: str, sections: str, idle_partitions: str, idle_records: int, **options) -> None:
    """Measure Rill against its ceilings and its peers (fresh local servers, stopped afterwards)."""
    chosen = {name.strip() for name in sections.split(",") if name.strip()}
    unknown = chosen - set(SECTIONS)
    if unknown:
        raise click.BadParameter(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}",
                                 param_hint="--sections")
    settings = Settings(latency_rates=tuple(int(rate) for rate in latency_rates.split(",")), **options)
    results = Results()
    idle = None
    with tempfile.TemporaryDirectory(prefix="rill-bench-") as folder:
        if chosen & {"single", "bulk"}:
            with running_cluster(Path(folder) / "single", 1) as layout:
                if "single" in chosen:
                    single_broker(layout, settings, results)
                if "bulk" in chosen:
                    results.extra_rows += bulk_rows(layout, settings)
        if "replicated" in chosen:
            with running_cluster(Path(folder) / "replicated", 3) as layout:
                replicated(layout, settings, results, chosen)
        if "peers" in chosen:
            peer_runs(Path(folder) / "peers", settings, results, replicated_too="replicated" in chosen)
        if "idle" in chosen:
            counts = [int(count) for count in idle_partitions.split(",") if count.strip()]
            idle = idle_partition_results(Path(folder) / "idle", counts, idle_records, settings.value_bytes)
    report(settings, chosen, results, idle)


if __name__ == "__main__":
    sys.exit(main())
