"""``make demo``: the e-commerce flow, end to end, on a local cluster.

Starts the cluster if none answers at the bootstrap addresses, creates
``orders.order.created`` and registers its schema, starts the payment,
inventory and notification services (one process and consumer group each)
and the order service, which places orders for ``--duration`` seconds. While
they run it shows, per service, the records handled, retried and
dead-lettered and the group's lag; when the orders are placed and every
group has caught up it prints the final summary, then stops every process it
started (the cluster too, if it started it).

    python examples/ecommerce/demo.py [--nodes 3] [--base-port 9092] [--data-dir ./data] [--duration 20] [--rate 50]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rill.client import Admin
from rill.client.errors import GroupIdNotFoundError, RillError, TopicAlreadyExistsError
from shop import (
    ORDER_CREATED_SCHEMA,
    ORDERS_PARTITIONS,
    ORDERS_SUBJECT,
    ORDERS_TOPIC,
    SERVICES,
    read_json,
)

HERE = Path(__file__).resolve().parent
CATCH_UP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
REFRESH_S = 0.5


def cluster_answers(bootstrap: str) -> bool:
    try:
        with Admin(bootstrap, request_timeout_ms=2000) as admin:
            admin.list_topics()
        return True
    except RillError:
        return False


def start_cluster(nodes: int, base_port: int, data_dir: Path, console: Console) -> None:
    console.print(f"no cluster answers: starting {nodes} node(s) in {data_dir}")
    subprocess.run([sys.executable, "-m", "rill.cluster", "cluster", "up", "--nodes", str(nodes), "--base-port",
                    str(base_port), "--data-dir", str(data_dir)], check=True, stdout=subprocess.DEVNULL)


def stop_cluster(data_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "rill.cluster", "cluster", "down", "--data-dir", str(data_dir)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare(bootstrap: str, console: Console) -> None:
    """The orders topic (replicated on up to 3 brokers) and its value schema (BACKWARD compatible)."""
    with Admin(bootstrap) as admin:
        replication = min(3, len(admin.describe_cluster().brokers))
        try:
            admin.create_topic(ORDERS_TOPIC, partitions=ORDERS_PARTITIONS, replication_factor=replication)
        except TopicAlreadyExistsError:
            pass
        version = admin.register_schema(ORDERS_SUBJECT, ORDER_CREATED_SCHEMA, compatibility="BACKWARD")
    console.print(f"topic {ORDERS_TOPIC} ({ORDERS_PARTITIONS} partitions, replication {replication}); "
                  f"schema {version.subject} version {version.version} (id {version.id})")


def spawn(script: str, bootstrap: str, state_dir: Path, *extra: str) -> subprocess.Popen:
    log = (state_dir / f"{script}.log").open("ab")
    return subprocess.Popen([sys.executable, str(HERE / f"{script}.py"), "--bootstrap", bootstrap,
                             "--state-dir", str(state_dir), *extra],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each process we started (by its pid), then SIGKILL whatever is still running."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def group_lag(admin: Admin, group: str) -> int | None:
    """Records of the orders topic the group has not committed yet, over every partition: one the group
    never committed counts from its log start (the services start at the earliest offset). None before
    the group exists."""
    try:
        committed = {p.partition: p.committed_offset for p in admin.describe_group(group).partitions
                     if p.topic == ORDERS_TOPIC and p.committed_offset is not None}
        partitions = admin.describe_topic(ORDERS_TOPIC).partitions
    except GroupIdNotFoundError:
        return None
    return sum(p.high_watermark - committed.get(p.partition, p.log_start_offset) for p in partitions)


def lags(admin: Admin) -> dict[str, int | None]:
    """Each service's group lag (group_lag); None while unknown (no group yet, or a broker not answering)."""
    result: dict[str, int | None] = {}
    for service, group in SERVICES.items():
        try:
            result[service] = group_lag(admin, group)
        except RillError:
            result[service] = None
    return result


def summary(state_dir: Path, group_lags: dict[str, int | None], processes: dict[str, subprocess.Popen]) -> Table:
    placed = read_json(state_dir / "order.json").get("placed", 0)
    table = Table(title=f"orders placed: {placed}")
    for column in ("service", "group", "handled", "retried", "dead-lettered", "lag", "process"):
        table.add_column(column, justify="left" if column in ("service", "group", "process") else "right")
    for service, group in SERVICES.items():
        stats = read_json(state_dir / f"{service}.json")
        process = processes.get(service)
        state = "running" if process is not None and process.poll() is None else "stopped"
        lag = group_lags.get(service)
        table.add_row(service, group, str(stats.get("handled", 0)), str(stats.get("retried", 0)),
                      str(stats.get("dead_lettered", 0)), "-" if lag is None else str(lag), state)
    return table


def caught_up(state_dir: Path, group_lags: dict[str, int | None]) -> bool:
    """The order service is done, every service group has committed up to the end of the topic, and every
    service has counted each order (handled or dead-lettered) in the counters it writes after each round."""
    order = read_json(state_dir / "order.json")
    if not order.get("done") or any(lag != 0 for lag in group_lags.values()):
        return False
    counted = [read_json(state_dir / f"{service}.json") for service in SERVICES]
    return all(stats.get("handled", 0) + stats.get("dead_lettered", 0) >= order["placed"] for stats in counted)


def watch(bootstrap: str, state_dir: Path, processes: dict[str, subprocess.Popen], duration: float,
          console: Console) -> Table:
    """Refresh the summary until everything is handled (or CATCH_UP_TIMEOUT_S after the orders end)."""
    deadline = time.monotonic() + duration + CATCH_UP_TIMEOUT_S
    with Admin(bootstrap) as admin, Live(console=console, auto_refresh=False,
                                         transient=not console.is_terminal) as live:
        while True:
            group_lags = lags(admin)
            table = summary(state_dir, group_lags, processes)
            live.update(table, refresh=True)
            if caught_up(state_dir, group_lags) or time.monotonic() > deadline:
                return table
            for name, process in processes.items():
                if name != "order" and process.poll() is not None:
                    raise click.ClickException(f"the {name} service exited with {process.returncode}; "
                                               f"see {state_dir / (name + '_service.log')}")
            time.sleep(REFRESH_S)


@click.command()
@click.option("--nodes", type=int, default=3, show_default=True)
@click.option("--base-port", type=int, default=9092, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("./data"), show_default=True)
@click.option("--duration", type=float, default=20.0, show_default=True, help="Seconds to place orders for.")
@click.option("--rate", type=float, default=50.0, show_default=True, help="Orders per second.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where services write their counters and logs (default: a new temporary folder).")
def main(nodes: int, base_port: int, data_dir: Path, duration: float, rate: float, state_dir: Path | None) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=120)
    bootstrap = ",".join(f"127.0.0.1:{base_port + index}" for index in range(nodes))
    state_dir = state_dir or Path(tempfile.mkdtemp(prefix="rill-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    started_cluster = not cluster_answers(bootstrap)
    if started_cluster:
        start_cluster(nodes, base_port, data_dir, console)
    processes: dict[str, subprocess.Popen] = {}
    try:
        prepare(bootstrap, console)
        for service in SERVICES:
            processes[service] = spawn(f"{service}_service", bootstrap, state_dir)
        processes["order"] = spawn("order_service", bootstrap, state_dir, "--duration", str(duration),
                                   "--rate", str(rate))
        console.print(f"services started (logs and counters in {state_dir}); placing orders for {duration:g} s")
        final = watch(bootstrap, state_dir, processes, duration, console)
        console.print(final)
        rill = os.path.relpath(Path(sys.executable).parent / "rill")
        console.print(f"dead letters: {rill} dlq list {ORDERS_TOPIC}.dlq --bootstrap {bootstrap}")
        console.print(f"a group:      {rill} groups describe payments --bootstrap {bootstrap}")
    finally:
        stop(processes)
        if started_cluster:
            stop_cluster(data_dir)
            console.print("stopped the cluster the demo started")


if __name__ == "__main__":
    main()
