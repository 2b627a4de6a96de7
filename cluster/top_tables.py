"""The screen of ``rill top``: a header line, then tables of brokers, topics and consumer groups.

Made to be read in 80 columns: every cell stays on one line (``no_wrap``,
cut with an ellipsis), names have a maximum width, numbers are short
(``12.3k``), so the key columns (ids, states, rates, lag) always show. The
tables share the terminal's height: when rows do not fit, the busiest
topics and the groups with the most lag are kept, and the title says how
many are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rill.cluster.top_sampler import BrokerRow, ClusterView

NAME_WIDTH_MAX = 28
ADDRESS_WIDTH_MAX = 21
MAX_BROKER_ROWS = 12
LINES_PER_TABLE = 3  # title, column headers, the rule under them
MAX_PROBLEM_LINES = 3
STATE_STYLES = {"up": "green", "down": "red", "fenced": "yellow", "not live": "yellow",
                "OK": "green", "CATCHING_UP": "yellow", "STALLED": "bold red"}

# (header, cell of a row, justify, maximum width)
Column = tuple[str, Callable[[Any], str], str, int | None]


def short_number(value: float | None) -> str:
    """A count or rate in at most 6 characters: 0, 12.5, 950, 12.3k, 4.5M, 1.2G; "-" when unknown."""
    if value is None:
        return "-"
    for at_least, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= at_least:
            return f"{value / unit:.1f}{suffix}"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:.1f}"
    return str(int(value))


def broker_state(row: BrokerRow) -> str:
    """"down" (does not answer), "fenced" (by the controller), "not live" (answers, but is not in the
    metadata's live brokers: not registered yet) or "up"."""
    if row.report is None:
        return "down"
    if row.report.fenced:
        return "fenced"
    return "up" if row.live else "not live"


def _reported(field: str) -> Callable[[BrokerRow], str]:
    return lambda row: "-" if row.report is None else str(getattr(row.report, field))


BROKER_COLUMNS: list[Column] = [
    ("id", lambda row: str(row.node_id), "right", None),
    ("address", lambda row: row.address, "left", ADDRESS_WIDTH_MAX),
    ("state", broker_state, "left", None),
    ("raft", _reported("raft_role"), "left", None),
    ("ctrl", lambda row: "yes" if row.controller else "", "left", None),
    ("led", _reported("partitions_led"), "right", None),
    ("under-repl", _reported("under_replicated"), "right", None),
]

TOPIC_COLUMNS: list[Column] = [
    ("topic", lambda row: row.name, "left", NAME_WIDTH_MAX),
    ("parts", lambda row: str(row.partitions), "right", None),
    ("log end", lambda row: short_number(row.log_end), "right", None),
    ("in/s", lambda row: short_number(row.in_rate), "right", None),
    ("out/s", lambda row: short_number(row.out_rate), "right", None),
]

GROUP_COLUMNS: list[Column] = [
    ("group", lambda row: row.group_id, "left", NAME_WIDTH_MAX),
    ("state", lambda row: row.state, "left", None),
    ("members", lambda row: str(row.members), "right", None),
    ("lag", lambda row: short_number(row.lag), "right", None),
    ("lag state", lambda row: row.lag_state or "-", "left", None),
]


def _table(title: str, columns: list[Column], rows: Iterable[Any]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  show_edge=False)
    for header, _, justify, width_max in columns:
        table.add_column(header, justify=justify, no_wrap=True, overflow="ellipsis", max_width=width_max)
    for row in rows:
        cells = [cell(row) for _, cell, _, _ in columns]
        table.add_row(*(Text(text, style=STATE_STYLES.get(text, "")) for text in cells))
    return table


def _share(room: int, topics: int, groups: int) -> tuple[int, int]:
    """Rows for topics and for groups: all if they fit in ``room``, else half each, what one side does not
    need going to the other."""
    group_rows = min(groups, max(room // 2, room - topics))
    return min(topics, room - group_rows), group_rows


def _fit(rows: list, room: int, busiest: Callable[[Any], float], name: Callable[[Any], str]) -> list:
    """All rows by name if they fit in ``room``, else the ``room`` busiest ones, by name."""
    if len(rows) > room:
        rows = sorted(rows, key=busiest, reverse=True)[:room]
    return sorted(rows, key=name)


def _title(what: str, shown: int, total: int, kept: str) -> str:
    return f"{what} ({total})" if shown == total else f"{what} ({shown} of {total}, {kept})"


def header(bootstrap: str, interval_s: float, view: ClusterView | None) -> Text:
    taken = "connecting..." if view is None else time.strftime("%H:%M:%S", time.localtime(view.taken_at))
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("rill top", style="bold")
    line.append(f"  {taken}  every {interval_s:g}s  q quits  {bootstrap}")
    return line


def render(view: ClusterView | None, bootstrap: str, interval_s: float, height: int) -> RenderableType:
    """The whole screen for a terminal ``height`` lines high (None: before the first sample)."""
    parts: list[RenderableType] = [header(bootstrap, interval_s, view)]
    if view is None:
        return Group(*parts)
    parts += [Text(problem, style="red", no_wrap=True, overflow="ellipsis")
              for problem in view.problems[:MAX_PROBLEM_LINES]]
    brokers = view.brokers[:MAX_BROKER_ROWS]
    room = max(2, height - len(parts) - len(brokers) - 3 * LINES_PER_TABLE - 1)
    topic_rows, group_rows = _share(room, len(view.topics), len(view.groups))
    topics = _fit(view.topics, topic_rows, lambda row: (row.in_rate or 0) + (row.out_rate or 0), lambda row: row.name)
    groups = _fit(view.groups, group_rows, lambda row: row.lag or 0, lambda row: row.group_id)
    parts.append(_table(_title("brokers", len(brokers), len(view.brokers), "first by id"), BROKER_COLUMNS, brokers))
    parts.append(_table(_title("topics", len(topics), len(view.topics), "busiest"), TOPIC_COLUMNS, topics))
    parts.append(_table(_title("groups", len(groups), len(view.groups), "most lag"), GROUP_COLUMNS, groups))
    return Group(*parts)
