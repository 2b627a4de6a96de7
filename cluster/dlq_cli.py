"""``rill dlq``: look into and replay the dead-letter topics that run_handler writes.

TOPIC may be the dead-letter topic itself (``orders.dlq``) or the topic
whose records failed (``orders``): a name ending in ``.dlq`` is taken as
it is; otherwise ``<TOPIC>.dlq`` if that topic exists, else TOPIC itself
(a dead-letter topic named with ``dead_letter_topic=``).

Registered on the ``rill`` group by cli.py, whose group turns every
RillError into one line ``error: ...`` and exit code 1.
"""

from __future__ import annotations

import importlib

import click
from rill.client.dead_letter import SUFFIX
from rill.client.partition_reader import PartitionReader
from rill.client.types import TopicPartition
from rill.cluster.dlq_replay import Replay, replay_group
from rill.cluster.dlq_tables import DeadLetterSummary, errors_table, summary_lines


def _cli():
    """cluster/cli.py, looked up when a command runs (it imports this module to register the group)."""
    return importlib.import_module("rill.cluster.cli")


bootstrap_option = click.option(
    "--bootstrap", envvar="RILL_BOOTSTRAP", default=lambda: _cli().DEFAULT_BOOTSTRAP,
    show_default="the local cluster's nodes", help="Brokers to connect to first: host:port[,host:port...] "
    "(env RILL_BOOTSTRAP).")


@click.group()
def dlq() -> None:
    """List and replay dead-letter topics (records run_handler gave up on)."""


def dead_letter_topic(admin, name: str) -> str:
    """The dead-letter topic TOPIC names (see the module docstring)."""
    if name.endswith(SUFFIX):
        return name
    return name + SUFFIX if name + SUFFIX in admin.list_topics() else name


@dlq.command("list")
@click.argument("topic_name", metavar="TOPIC")
@bootstrap_option
def dlq_list(topic_name: str, bootstrap: str) -> None:
    """Sum up a dead-letter topic: count, oldest and newest, errors by type.

    Reads every record stored now (the end of each partition is taken at
    the start), outside any consumer group.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        topic = dead_letter_topic(admin, topic_name)
        partitions = admin.describe_topic(topic).partitions
    summary = DeadLetterSummary(topic, len(partitions))
    reader = PartitionReader(bootstrap)
    try:
        for info in partitions:
            tp = TopicPartition(topic, info.partition)
            first, end = reader.bounds(tp)
            for record in reader.read(tp, first, end):
                summary.add(record)
    finally:
        reader.close()
    for line in summary_lines(summary):
        click.echo(line)
    if summary.errors:
        _cli()._console().print(errors_table(summary))


@dlq.command("replay")
@click.argument("topic_name", metavar="TOPIC")
@click.option("--to", "to_topic", metavar="TOPIC", help="Publish here [default: each record's original topic].")
@click.option("--filter-error", "error_type", metavar="TYPE",
              help="Only records whose dlq.error.type is TYPE (an exception class name, e.g. ValueError).")
@bootstrap_option
def dlq_replay(topic_name: str, to_topic: str | None, error_type: str | None, bootstrap: str) -> None:
    """Publish dead-lettered records again, each once (progress is kept in a consumer group).

    Records keep their key, value and original headers, plus dlq.replayed=1.
    """
    from rill.client import Admin

    with Admin(bootstrap) as admin:
        topic = dead_letter_topic(admin, topic_name)
        outcome = Replay(admin, bootstrap, topic, to_topic, error_type).run()
    where = to_topic or "their original topics"
    click.echo(f"replayed {outcome.replayed} record(s) from {topic} to {where}; skipped {outcome.skipped} "
               f"(progress in group {replay_group(topic, error_type)})")
