"""The rich tables the CLI prints: cluster status and topic descriptions.

Each table is a list of columns, each a header and a function of one row, so
a new column (Raft role, controller, partitions led) is one more entry.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from rich.table import Table

from rill.client.types import TopicDescription
from rill.cluster.launcher import NodeStatus

Column = tuple[str, Callable[[Any], object]]


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _ids(ids: Iterable[int]) -> str:
    return ",".join(map(str, ids))


STATUS_COLUMNS: list[Column] = [
    ("node", lambda status: status.node_id),
    ("pid", lambda status: "-" if status.pid is None else status.pid),
    ("process", lambda status: status.state.value),
    ("alive", lambda status: _yes_no(status.state.alive)),
    ("answers", lambda status: _yes_no(status.answers)),
    ("port", lambda status: status.port),
    ("data dir", lambda status: status.data_dir),
]

PARTITION_COLUMNS: list[Column] = [
    ("partition", lambda partition: partition.partition),
    ("leader", lambda partition: partition.leader),
    ("replicas", lambda partition: _ids(partition.replicas)),
    ("isr", lambda partition: _ids(partition.isr)),
    ("leader epoch", lambda partition: partition.leader_epoch),
    ("high watermark", lambda partition: partition.high_watermark),
    ("log start offset", lambda partition: partition.log_start_offset),
]


def build_table(title: str, columns: list[Column], rows: Iterable[Any]) -> Table:
    """A table with one line per row and one cell per column."""
    table = Table(title=title, title_justify="left")
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(cell(row)) for _, cell in columns))
    return table


def status_table(statuses: list[NodeStatus]) -> Table:
    """One line per node: pid, process state, whether it answers, its port and data dir."""
    return build_table("nodes", STATUS_COLUMNS, statuses)


def topic_tables(description: TopicDescription) -> list[Table]:
    """The topic's partitions, then its configuration sorted by name."""
    partitions = build_table(f"topic {description.name}: {len(description.partitions)} partition(s)",
                             PARTITION_COLUMNS, sorted(description.partitions, key=lambda info: info.partition))
    config = build_table("config", [("name", lambda item: item[0]), ("value", lambda item: item[1])],
                         sorted(description.config.items()))
    return [partitions, config]
