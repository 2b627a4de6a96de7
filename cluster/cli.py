"""The ``rill`` command line: run a node, run a local cluster, manage topics and consumer groups, produce and consume.

This module only parses arguments and prints; the work is in launcher.py
(processes), layout.py (files and ports), console.py (produce and consume)
and tables.py (what tables show). Expected failures, every RillError from
the client and every ClusterError from the launcher, end as one line
``error: ...`` on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import closing
from pathlib import Path

import click
from rich.console import Console
from rill.client.errors import InvalidConfigError, RillError
from rill.cluster import console, launcher, schema_cli, tables
from rill.cluster.layout import (
    ClusterError,
    ClusterLayout,
    layout_file,
    plan_layout,
    read_layout,
)
from rill.node.config import load_node_config
from rill.node.structured_logging import LOG_FORMATS, LOG_LEVELS

DEFAULT_NODE_COUNT = 3
DEFAULT_BASE_PORT = 9092
DEFAULT_DATA_DIR = "./data"
# Every node of the default local cluster, so that clients still connect while node 1 is down.
DEFAULT_BOOTSTRAP = ClusterLayout(Path(DEFAULT_DATA_DIR), DEFAULT_NODE_COUNT, DEFAULT_BASE_PORT).bootstrap
PIPED_OUTPUT_WIDTH = 250
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP, "CONT": signal.SIGCONT}


class CommandError(click.ClickException):
    """An expected failure, shown as one line ``error: <message>``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class RillGroup(click.Group):
    """The top-level group: turns expected errors of any subcommand into CommandError."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RillError as error:
            raise CommandError(f"{type(error).__name__}: {error}") from None
        except (TypeError, ValueError) as error:  # the client refused an argument given on the command line
            raise CommandError(f"{type(error).__name__}: {error}") from None
        except ClusterError as error:
            raise CommandError(str(error)) from None
        except BrokenPipeError:
            _silence_stdout()
            raise SystemExit(1) from None


def _silence_stdout() -> None:
    """After the reader of our stdout has gone (``rill consume | head``), send the rest nowhere, quietly."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _console() -> Console:
    """A rich console; when stdout is not a terminal, wide enough that table rows stay on one line (for grep)."""
    output = Console()
    return output if output.is_terminal else Console(width=PIPED_OUTPUT_WIDTH)


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR, show_default=True,
    help="Folder of the local cluster: layout, pid files, logs and every node's data.")
bootstrap_option = click.option(
    "--bootstrap", envvar="RILL_BOOTSTRAP", default=DEFAULT_BOOTSTRAP, show_default=True,
    help="Brokers to connect to first: host:port[,host:port...] (env RILL_BOOTSTRAP).")
timeout_option = click.option(
    "--timeout", "timeout_seconds", type=click.FloatRange(min=0), default=launcher.READY_TIMEOUT_SECONDS,
    show_default=True, help="Seconds to wait for the nodes to answer.")


@click.group(cls=RillGroup)
def main() -> None:
    """Rill: a Kafka-class event streaming platform."""


@main.command()
@click.option("--id", "node_id", type=int, required=True, help="This node's id (1-based).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Node config file (TOML); the flags below override it.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data folder of the cluster.")
@click.option("--base-port", type=click.IntRange(1, 65535), help="Port of node 1; node i uses base+i-1.")
@click.option("--nodes", "node_count", type=click.IntRange(min=1), help="Number of nodes in the cluster.")
@click.option("--cluster-id", help="Cluster id; every node of a cluster must agree.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), envvar="RILL_LOG_LEVEL",
              help="Log lines from this level up (env RILL_LOG_LEVEL; default INFO).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS),
              help="text: one line per event for people; json: one JSON object per line (default text).")
def node(node_id: int, config_path: Path | None, data_dir: Path | None, base_port: int | None,
         node_count: int | None, cluster_id: str | None, log_level: str | None, log_format: str | None) -> None:
    """Run one broker in the foreground until SIGTERM or Ctrl-C.

    Every node of a cluster needs the same cluster secret: cluster_secret in
    the config, else RILL_CLUSTER_SECRET, else the file cluster.secret in the
    data dir (rill cluster up writes it; a one-node cluster creates it).
    """
    overrides = {"node_id": node_id, "data_dir": data_dir, "base_port": base_port,
                 "node_count": node_count, "cluster_id": cluster_id,
                 "log_level": log_level, "log_format": log_format}
    try:
        config = load_node_config(config_path, overrides)
        # Imported here, after the config checks: only this command loads the broker.
        from rill.node.main import run_node

        run_node(config)
    except InvalidConfigError as error:
        raise CommandError(f"invalid node config: {error}", exit_code=2) from None


@main.group()
def cluster() -> None:
    """Run a local cluster on this machine."""


@cluster.command()
@click.option("--nodes", "node_count", type=click.IntRange(min=1),
              help=f"Number of nodes [default: the data dir's recorded layout, else {DEFAULT_NODE_COUNT}]")
@click.option("--base-port", type=click.IntRange(1, 65535),
              help=f"Port of node 1 [default: the data dir's recorded layout, else {DEFAULT_BASE_PORT}]")
@data_dir_option
@timeout_option
def up(node_count: int | None, base_port: int | None, data_dir: Path, timeout_seconds: float) -> None:
    """Start a local cluster in the background.

    Starts every node at once (they elect a Raft leader among themselves),
    waits until each answers clients on its port, and prints the bootstrap
    list of all nodes on stdout (progress goes to stderr).
    """
    layout = plan_layout(data_dir, node_count, base_port, DEFAULT_NODE_COUNT, DEFAULT_BASE_PORT)
    click.echo(f"starting {layout.node_count} node(s) in {layout.data_dir}", err=True)
    launcher.start_nodes(layout, list(layout.node_ids), timeout_seconds)
    for node_id in layout.node_ids:
        click.echo(f"node {node_id}: pid {launcher.read_pid(layout, node_id)}, port {layout.node(node_id).port}, "
                   f"log {layout.log_file(node_id)}", err=True)
    click.echo(layout.bootstrap)


@cluster.command()
@data_dir_option
def down(data_dir: Path) -> None:
    """Stop every node of the local cluster.

    Sends SIGTERM, then SIGKILL to a node still running after a timeout.
    """
    if not layout_file(data_dir).exists():
        click.echo(f"no cluster in {data_dir}: nothing to stop", err=True)
        return
    layout = read_layout(data_dir)
    for node_id, outcome in launcher.stop_nodes(layout, list(layout.node_ids)).items():
        click.echo(f"node {node_id}: {outcome}")


@cluster.command()
@data_dir_option
def status(data_dir: Path) -> None:
    """Show each node and the controller.

    For each node: its pid, whether its process is alive, whether it answers
    clients on its port, the port, and from the node's own report (NODE_STATUS;
    "-" when it does not answer): its Raft role, whether it is the controller,
    whether the controller has fenced it, how many partitions it leads and how
    many of those are under-replicated, which partition replicas it serves
    nothing of ("offline": a disk error took them offline, or their topic's
    config cannot be applied there), and how late its event loop ran what
    was due over the last minute (p99 and max, in ms). Then its data dir.
    """
    layout = read_layout(data_dir)
    statuses = launcher.node_statuses(layout)
    _console().print(tables.status_table(statuses))
    click.echo(tables.controller_line(statuses))
    click.echo(f"bootstrap: {layout.bootstrap}")


@cluster.command()
@click.argument("node_id", metavar="ID", type=int)
@click.option("--signal", "signal_name", type=click.Choice(sorted(SIGNALS), case_sensitive=False),
              default="KILL", show_default=True, help="Signal to send.")
@data_dir_option
def kill(node_id: int, signal_name: str, data_dir: Path) -> None:
    """Send a signal to one node (failure testing).

    After KILL or TERM, waits (bounded) for the process to exit.
    """
    layout = read_layout(data_dir)
    state = launcher.signal_node(layout, node_id, SIGNALS[signal_name.upper()])
    click.echo(f"node {node_id}: sent SIG{signal_name.upper()}; process {state.value}")


@cluster.command()
@click.argument("node_ids", metavar="ID...", type=int, nargs=-1, required=True)
@data_dir_option
@timeout_option
def start(node_ids: tuple[int, ...], data_dir: Path, timeout_seconds: float) -> None:
    """Start nodes again (after kill), together.

    Uses the recorded layout and waits until these nodes answer clients, not
    for the rest of the cluster. If too few nodes would run for a Raft
    majority, waits only until they run and says how many more to start.
    """
    layout = read_layout(data_dir)
    ids = list(dict.fromkeys(node_ids))
    without_quorum = launcher.start_nodes(layout, ids, timeout_seconds)
    for node_id in ids:
        click.echo(f"node {node_id}: pid {launcher.read_pid(layout, node_id)}, port {layout.node(node_id).port}")
    if without_quorum:
        click.echo(f"node(s) {', '.join(map(str, without_quorum))} running but not yet serving clients: that "
                   f"needs {launcher.majority(layout)} of the {layout.node_count} nodes running (a Raft majority). "
                   "Start more soon with rill cluster start ID: a node waits only a limited time for a majority.",
                   err=True)


@cluster.command("rebalance-leaders")
@bootstrap_option
def rebalance_leaders(bootstrap: str) -> None:
    """Move leaderships back to preferred replicas.

    The preferred replica is the first of the partition's replicas; it takes
    over only where it is in sync. Prints how many partitions moved.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        moved = admin.elect_leaders()
    click.echo(f"moved leadership of {moved} partition(s) to their preferred replica")


@main.group()
def topic() -> None:
    """Create, list, describe and delete topics."""


def _parse_config(context: click.Context, parameter: click.Parameter, items: tuple[str, ...]) -> dict[str, str]:
    """``("retention.ms=1000", ...)`` as a dict; a bad item is a usage error."""
    config = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"{item!r} is not key=value", context, parameter)
        config[name] = value
    return config


@topic.command("create")
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--replication-factor", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--config", "config", multiple=True, callback=_parse_config, metavar="KEY=VALUE",
              help="A topic setting, e.g. retention.ms=604800000 (repeatable).")
@bootstrap_option
def topic_create(name: str, partitions: int, replication_factor: int, config: dict[str, str], bootstrap: str) -> None:
    """Create a topic."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        admin.create_topic(name, partitions=partitions, replication_factor=replication_factor, config=config)
    click.echo(f"created topic {name}: {partitions} partition(s), replication factor {replication_factor}")


@topic.command("list")
@bootstrap_option
def topic_list(bootstrap: str) -> None:
    """Print every topic's name, one per line."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        names = admin.list_topics()
    for name in sorted(names):
        click.echo(name)


@topic.command("describe")
@click.argument("name")
@bootstrap_option
def topic_describe(name: str, bootstrap: str) -> None:
    """Show a topic's partitions and config.

    For each partition: leader, replicas, in-sync replicas, leader epoch,
    high watermark and log start offset.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        description = admin.describe_topic(name)
    output = _console()
    for table in tables.topic_tables(description):
        output.print(table)


@topic.command("delete")
@click.argument("name")
@bootstrap_option
def topic_delete(name: str, bootstrap: str) -> None:
    """Delete a topic and its data."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}")


@main.group()
def groups() -> None:
    """List, describe (with lag), reset offsets of, and delete consumer groups."""


@groups.command("list")
@bootstrap_option
def groups_list(bootstrap: str) -> None:
    """Show every group's state and member count."""
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        summaries = admin.list_groups()
    _console().print(tables.groups_table(summaries))


@groups.command("describe")
@click.argument("group_id", metavar="GROUP")
@bootstrap_option
def groups_describe(group_id: str, bootstrap: str) -> None:
    """Show a group's state, members and lag.

    The group at a glance, then its lag state as the coordinator judges it
    (OK, CATCHING_UP or STALLED). Members: id, client id,
    epoch, subscription, assigned partitions. Then per partition: committed
    offset, log end (high watermark), lag in records ("-" where nothing is
    committed) and in seconds (age of the first uncommitted record), owner.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        description = admin.describe_group(group_id)
    click.echo(tables.group_line(description))
    click.echo(tables.lag_state_line(description))
    output = _console()
    for table in tables.group_tables(description):
        output.print(table)


@groups.command("reset-offsets")
@click.argument("group_id", metavar="GROUP")
@click.option("--topic", "topic_name", required=True, help="The topic whose offsets to set.")
@click.option("--to-earliest", is_flag=True, help="To each partition's log start.")
@click.option("--to-latest", is_flag=True, help="To each partition's log end (skip everything).")
@click.option("--to-offset", type=int, help="To this offset, clamped into each partition's log.")
@click.option("--to-datetime", metavar="ISO-8601",
              help="To the first record at or after this time, e.g. 2024-05-01T12:00:00Z (no zone: UTC).")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Only this partition (repeatable) [default: every partition of the topic].")
@bootstrap_option
def groups_reset_offsets(group_id: str, topic_name: str, to_earliest: bool, to_latest: bool, to_offset: int | None,
                         to_datetime: str | None, partitions: tuple[int, ...], bootstrap: str) -> None:
    """Set a group's committed offsets of a topic; prints them.

    Give exactly one of --to-earliest, --to-latest, --to-offset,
    --to-datetime. The group must have no members: stop its consumers first.
    """
    from rill.client import Admin

    targets = {"--to-earliest": to_earliest, "--to-latest": to_latest, "--to-offset": to_offset is not None,
               "--to-datetime": to_datetime is not None}
    if sum(targets.values()) != 1:
        raise CommandError(f"give exactly one of {', '.join(targets)}", exit_code=2)
    with Admin(bootstrap) as admin:
        offsets = admin.reset_offsets(group_id, topic_name, to_earliest=to_earliest, to_latest=to_latest,
                                      to_offset=to_offset, to_datetime=to_datetime,
                                      partitions=list(partitions) or None)
    click.echo(f"group {group_id}: committed new offsets for {len(offsets)} partition(s) of {topic_name}")
    _console().print(tables.new_offsets_table(offsets))


@groups.command("delete")
@click.argument("group_id", metavar="GROUP")
@bootstrap_option
def groups_delete(group_id: str, bootstrap: str) -> None:
    """Delete a group and its committed offsets.

    Only a group without members: stop its consumers first.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        admin.delete_group(group_id)
    click.echo(f"deleted group {group_id}")


@main.command()
@click.argument("topic_name", metavar="TOPIC")
@click.option("--key", help="Key of every record (UTF-8).")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True)
@bootstrap_option
def produce(topic_name: str, key: str | None, acks: str, bootstrap: str) -> None:
    """Send one record per line of stdin.

    Flushes at end of input and prints how many records were acknowledged.
    """
    lines = map(console.strip_newline, sys.stdin.buffer)
    outcome = console.produce_lines(bootstrap, topic_name, lines, None if key is None else key.encode(), acks)
    click.echo(f"acknowledged {outcome.acknowledged} of {outcome.sent} record(s)")
    if outcome.first_error is not None:
        error = outcome.first_error
        raise CommandError(f"{type(error).__name__}: {error}")


@main.command()
@click.argument("topic_name", metavar="TOPIC")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record (default: only new records).")
@click.option("--max-messages", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("--timeout-ms", "idle_timeout_ms", type=click.IntRange(min=0),
              help="Stop after this many milliseconds without a new record.")
@click.option("--print-key", is_flag=True, help="Print key<TAB>value.")
@click.option("--print-offset", is_flag=True, help="Print partition:offset<TAB> first.")
@click.option("--group", help="Consume as a member of this consumer group, committing what is printed.")
@bootstrap_option
def consume(topic_name: str, from_beginning: bool, max_messages: int | None, idle_timeout_ms: int | None,
            print_key: bool, print_offset: bool, group: str | None, bootstrap: str) -> None:
    """Print a topic's records, one per line.

    Values are decoded as UTF-8 (bad bytes replaced). Stops after
    --max-messages records, after --timeout-ms without one, or at Ctrl-C.
    With --group, starts at the group's committed offsets (--from-beginning
    applies only where the group has none) and commits what it printed.
    """
    count = 0
    records = console.consume_records(bootstrap, topic_name, from_beginning, max_messages, idle_timeout_ms, group)
    try:
        with closing(records):
            for record in records:
                click.echo(console.format_record(record, print_key, print_offset))
                count += 1
    except KeyboardInterrupt:
        pass
    click.echo(f"consumed {count} record(s)", err=True)


from rill.cluster.dlq_cli import dlq  # noqa: E402 - rill dlq: its commands live in dlq_cli.py

main.add_command(dlq)
main.add_command(schema_cli.schema)

from rill.cluster.top import top  # noqa: E402 - rill top: its command lives in top.py

main.add_command(top)
