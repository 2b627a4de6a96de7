"""The console's figures per partition and topic: offsets and size from the nodes' reports, in and out rates.

Offsets and size are the leader's (a follower's when the leader did not
report). In, per partition: records appended per second, from the growth of
the leader's log end offset. Out, per topic: records handed to consumers per
second, from the growth of every node's BrokerStats counter. Rates come
from RateSampler (rate_sampler.py): None at the first look, known from the
second on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rill.node.http.cluster_report import NodeReport
from rill.node.http.rate_sampler import RateSampler

PartitionKey = tuple[str, int]  # (topic, partition)


@dataclass
class PartitionFigures:
    """What is known of one partition; None where no node reported it (yet)."""

    log_start_offset: int | None = None
    high_watermark: int | None = None
    log_end_offset: int | None = None
    size_bytes: int | None = None
    in_rate: float | None = None


@dataclass(frozen=True)
class Figures:
    """One look: every reported partition's figures, and each topic's out rate (None: no earlier look)."""

    partitions: dict[PartitionKey, PartitionFigures]
    out_rates: dict[str, float] | None

    def out_rate(self, topic: str) -> float | None:
        return None if self.out_rates is None else self.out_rates.get(topic, 0.0)


class TopicFigures:
    """Looks at the reports and keeps the samples the rates need. Used on the broker's loop."""

    def __init__(self) -> None:
        self._appended: RateSampler[PartitionKey] = RateSampler()
        self._handed_out: RateSampler[tuple[int, str]] = RateSampler()

    def look(self, reports: Iterable[NodeReport]) -> Figures:
        reports = list(reports)
        return Figures(self._partitions(reports), self._out_rates(reports))

    def _partitions(self, reports: list[NodeReport]) -> dict[PartitionKey, PartitionFigures]:
        figures: dict[PartitionKey, PartitionFigures] = {}
        for report in reports:
            for replica in report.replicas:
                key = (replica.topic, replica.partition)
                if replica.leader or key not in figures:  # the leader's figures win over a follower's
                    figures[key] = PartitionFigures(replica.log_start_offset, replica.high_watermark,
                                                    replica.log_end_offset, replica.size_bytes)
        appended = self._appended.rates({key: found.log_end_offset for key, found in figures.items()
                                         if found.log_end_offset is not None})
        if appended is not None:
            for key, found in figures.items():
                found.in_rate = appended.get(key)
        return figures

    def _out_rates(self, reports: list[NodeReport]) -> dict[str, float] | None:
        rates = self._handed_out.rates({(report.node_id, topic): records_out for report in reports
                                        for topic, (_, records_out) in report.traffic.items()})
        if rates is None:
            return None
        by_topic: dict[str, float] = defaultdict(float)
        for (_, topic), rate in rates.items():
            by_topic[topic] += rate
        return by_topic
