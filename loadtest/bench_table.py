"""The bench's tables: Rill's numbers as ratios to its own ceilings and to its peers.

A ``Row`` holds numbers, not text: Rill's result, the client's and the
broker's ceiling where they apply, and each peer's result. The table shows
Rill's number, then the ratios, so that a run on a slow or busy machine
still says how close Rill comes to what its parts allow and how it compares
with its peers measured in the same run:

- "of client ceiling", "of broker ceiling": Rill / ceiling (ceilings.py);
- one column per peer, oriented so that >1 means Rill is better:
  Rill / peer for throughput, peer / Rill for latency and failover time.

A measurement that could not be made is a string saying why (not installed,
not available, failed: ...), shown in its cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

Outcome = tuple[float, ...] | str  # the numbers of a measurement, or why there are none
THROUGHPUT = "records/s"
LATENCY = "ms"  # (p50, p99)
SECONDS = "s"
RATIO = "x"  # a Rill-only ratio (e.g. send_many / send)
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Row:
    """One measurement: Rill's outcome, its ceilings (None: does not apply) and each peer's outcome."""

    name: str
    how: str
    unit: str
    rill: Outcome
    client_ceiling: Outcome | None = None
    broker_ceiling: Outcome | None = None
    peers: dict[str, Outcome] = field(default_factory=dict)  # a peer not named here: does not apply

    @property
    def higher_is_better(self) -> bool:
        return self.unit in (THROUGHPUT, RATIO)


def measured(outcome: Outcome | None) -> bool:
    return isinstance(outcome, tuple)


def show(unit: str, outcome: Outcome) -> str:
    """One outcome as text in its unit."""
    if not measured(outcome):
        return outcome
    if unit == THROUGHPUT:
        return f"{outcome[0]:,.0f}/s"
    if unit == LATENCY:
        return f"p50 {outcome[0]:.2f} / p99 {outcome[1]:.2f} ms"
    if unit == SECONDS:
        return f"{outcome[0]:.2f} s"
    return f"x{outcome[0]:.2f}"


def of_ceiling(row: Row, ceiling: Outcome | None) -> str:
    """Rill / ceiling, as a percentage with the ceiling's own number."""
    if ceiling is None:
        return ""
    if not measured(ceiling) or not measured(row.rill):
        return ceiling if not measured(ceiling) else "-"
    return f"{row.rill[0] / ceiling[0]:.0%} of {show(row.unit, ceiling)}"


def against_peer(row: Row, peer: str) -> str:
    """How Rill compares with ``peer`` on this row, >1 meaning Rill is better, with the peer's number."""
    outcome = row.peers.get(peer, NOT_APPLICABLE)
    if not measured(outcome) or not measured(row.rill):
        return outcome if not measured(outcome) else "-"
    ratios = [(mine / theirs if row.higher_is_better else theirs / mine) if mine and theirs else float("nan")
              for mine, theirs in zip(row.rill, outcome)]
    if row.unit == LATENCY:
        return f"p50 x{ratios[0]:.2f}, p99 x{ratios[1]:.2f} ({show(row.unit, outcome)})"
    return f"x{ratios[0]:.2f} ({show(row.unit, outcome)})"


def ratio_table(rows: list[Row], peers: list[str]) -> Table:
    """The headline table: Rill, its share of each ceiling, and Rill against each peer."""
    table = Table(title="Rill against its ceilings and its peers (for each peer: >1 means Rill is better; "
                        "throughput Rill/peer, latency and failover peer/Rill)")
    for column in ("measurement", "how", "Rill", "of client ceiling", "of broker ceiling",
                   *(f"vs {peer}" for peer in peers)):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.name, row.how, show(row.unit, row.rill), of_ceiling(row, row.client_ceiling),
                      of_ceiling(row, row.broker_ceiling), *(against_peer(row, peer) for peer in peers))
    return table


def lag_table(lags: list[tuple[str, str, str, str, str]]) -> Table:
    table = Table(title="Broker event-loop lag, ms (over the minute before the end of each run)")
    for column in ("run", "node", "p50", "p99", "max"):
        table.add_column(column)
    for row in lags:
        table.add_row(*row)
    return table


IDLE_COLUMNS = (("idle_partitions", "idle partitions", "{:,}"), ("create_s", "create, s", "{:.1f}"),
                ("hot_records_per_s", "hot partition, records/s", "{:,.0f}"),
                ("idle_cpu_per_s", "idle CPU, s per s", "{:.3f}"),
                ("restart_to_full_isr_s", "restart to full ISR, s", "{:.1f}"))


def idle_table(results: list[dict] | str) -> Table:
    """The cost of idle partitions, one line per count (partition_scale.bench_idle_partitions; a dict with
    "failed" for a count that could not be measured), or why there is none."""
    table = Table(title="Cost of idle partitions")
    for _, title, _ in IDLE_COLUMNS:
        table.add_column(title)
    if isinstance(results, str):
        table.add_row(results, *("" for _ in IDLE_COLUMNS[1:]))
        return table
    table.add_column("hot partition vs 0 idle")
    base = next((result.get("hot_records_per_s") for result in results if result.get("idle_partitions") == 0), None)
    for result in results:
        if "failed" in result:
            table.add_row(f"{result['idle_partitions']:,}", result["failed"], *("" for _ in IDLE_COLUMNS[1:]))
            continue
        hot = result.get("hot_records_per_s")
        table.add_row(*(_cell(fmt, result.get(key)) for key, _, fmt in IDLE_COLUMNS),
                      f"x{hot / base:.2f}" if hot and base else "-")
    return table


def _cell(fmt: str, value: object) -> str:
    return "-" if value is None else fmt.format(value)
