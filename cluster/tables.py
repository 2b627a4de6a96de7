"""The rich tables the CLI prints: cluster status, topic descriptions, consumer groups and their lag.

Each table is a list of columns, each a header and a function of one row, so
a new column is one more entry.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from rich.table import Table
from rill.client.types import (
    GroupDescription,
    GroupMember,
    GroupSummary,
    TopicDescription,
    TopicPartition,
)
from rill.cluster.launcher import NodeStatus

Column = tuple[str, Callable[[Any], object]]


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _ids(ids: Iterable[int]) -> str:
    return ",".join(map(str, ids))


def _offline(partitions: list[str]) -> str:
    """The partitions a node serves nothing of (disk error, unusable config), or "none"."""
    return ",".join(partitions) if partitions else "none"


def _reported(field: str) -> Callable[[NodeStatus], object]:
    """A cell from the node's own NODE_STATUS report; "-" when it did not answer."""
    return lambda status: "-" if status.report is None else getattr(status.report, field)


STATUS_COLUMNS: list[Column] = [
    ("node", lambda status: status.node_id),
    ("pid", lambda status: "-" if status.pid is None else status.pid),
    ("process", lambda status: status.state.value),
    ("alive", lambda status: _yes_no(status.state.alive)),
    ("answers", lambda status: _yes_no(status.answers)),
    ("port", lambda status: status.port),
    ("raft role", _reported("raft_role")),
    ("controller", lambda status: _yes_no(status.is_controller)),
    ("fenced", lambda status: "-" if status.report is None else _yes_no(status.report.fenced)),
    ("partitions led", _reported("partitions_led")),
    ("under-replicated", _reported("under_replicated")),
    ("offline", lambda status: "-" if status.report is None else _offline(status.report.offline_partitions)),
    ("loop lag p99/max ms", lambda status: "-" if status.report is None else
     f"{status.report.loop_lag_ms_p99:.1f}/{status.report.loop_lag_ms_max:.1f}"),
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


GROUP_COLUMNS: list[Column] = [
    ("group", lambda group: group.group_id),
    ("state", lambda group: group.state),
    ("members", lambda group: group.members),
]

MEMBER_COLUMNS: list[Column] = [
    ("member id", lambda member: member.member_id),
    ("client id", lambda member: member.client_id),
    ("epoch", lambda member: member.member_epoch),
    ("subscription", lambda member: _subscription(member)),
    ("assignment", lambda member: _partitions(member.assignment)),
]

LAG_COLUMNS: list[Column] = [
    ("topic", lambda lag: lag.topic),
    ("partition", lambda lag: lag.partition),
    ("committed", lambda lag: _or_dash(lag.committed_offset)),
    ("log end", lambda lag: _or_dash(lag.log_end_offset if lag.log_end_offset >= 0 else None)),
    ("lag", lambda lag: _or_dash(lag.lag)),
    ("lag s", lambda lag: f"{lag.lag_seconds:.1f}"),
    ("owner", lambda lag: _or_dash(lag.owner)),
]

NEW_OFFSET_COLUMNS: list[Column] = [
    ("topic", lambda item: item[0].topic),
    ("partition", lambda item: item[0].partition),
    ("new offset", lambda item: item[1]),
]


def _or_dash(value: object | None) -> object:
    """Unknown values show as "-", as Kafka's tools show them."""
    return "-" if value is None else value


def _subscription(member: GroupMember) -> str:
    topics = ",".join(member.subscribed_topics)
    pattern = f"pattern {member.subscribed_pattern}" if member.subscribed_pattern else ""
    return " ".join(part for part in (topics, pattern) if part) or "-"


def _partitions(partitions: Iterable[TopicPartition]) -> str:
    """``orders:0,1,2 payments:0`` (partitions grouped by topic)."""
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(partitions):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{topic}:{_ids(indexes)}" for topic, indexes in by_topic.items()) or "-"


def build_table(title: str, columns: list[Column], rows: Iterable[Any]) -> Table:
    """A table with one line per row and one cell per column."""
    table = Table(title=title, title_justify="left")
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(cell(row)) for _, cell in columns))
    return table


def status_table(statuses: list[NodeStatus]) -> Table:
    """One line per node: pid, process state, whether it answers, its port, its own report, its data dir."""
    return build_table("nodes", STATUS_COLUMNS, statuses)


def controller_line(statuses: list[NodeStatus]) -> str:
    """Which node is the controller, as the nodes that answered report it (they may briefly disagree)."""
    views = {status.node_id: status.report.controller_id for status in statuses if status.report is not None}
    named = sorted(set(views.values()) - {-1})
    if not views:
        return "controller: unknown (no node answers)"
    if not named:
        return "controller: none (no Raft leader elected: is a majority of the nodes running?)"
    if len(named) == 1 and len(set(views.values())) == 1:
        return f"controller: node {named[0]}"
    said = ", ".join(f"node {node_id} says {'none' if controller == -1 else controller}"
                     for node_id, controller in sorted(views.items()))
    return f"controller: the nodes disagree ({said})"


def topic_tables(description: TopicDescription) -> list[Table]:
    """The topic's partitions, then its configuration sorted by name."""
    partitions = build_table(f"topic {description.name}: {len(description.partitions)} partition(s)",
                             PARTITION_COLUMNS, sorted(description.partitions, key=lambda info: info.partition))
    config = build_table("config", [("name", lambda item: item[0]), ("value", lambda item: item[1])],
                         sorted(description.config.items()))
    return [partitions, config]


def groups_table(groups: list[GroupSummary]) -> Table:
    """One line per consumer group: its id, state and member count."""
    return build_table(f"{len(groups)} consumer group(s)", GROUP_COLUMNS, groups)


def group_line(description: GroupDescription) -> str:
    """The group at a glance: state, epoch, assignor, member count and total lag."""
    return (f"group {description.group_id}: state {description.state}, epoch {description.group_epoch}, "
            f"assignor {description.assignor}, {len(description.members)} member(s), "
            f"total lag {description.total_lag}")


def lag_state_line(description: GroupDescription) -> str:
    """The coordinator's verdict on the group's lag: OK, CATCHING_UP or STALLED."""
    return f"lag state: {description.lag_state}"


def group_tables(description: GroupDescription) -> list[Table]:
    """The group's members (if any), then its partitions with committed offset, log end, lag in records and in
    seconds (age of the first uncommitted record) and owner (the member holding it; "-": unknown or none)."""
    partitions = build_table(f"offsets: {len(description.partitions)} partition(s)", LAG_COLUMNS,
                             description.partitions)
    if not description.members:
        return [partitions]
    return [build_table(f"members: {len(description.members)}", MEMBER_COLUMNS, description.members), partitions]


def new_offsets_table(offsets: dict[TopicPartition, int]) -> Table:
    """The offsets a reset committed, one line per partition."""
    return build_table("new offsets", NEW_OFFSET_COLUMNS, sorted(offsets.items()))
