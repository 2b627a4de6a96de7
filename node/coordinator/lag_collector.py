"""Consumer lag on a broker's /metrics: the lag its coordinator last read for the groups it coordinates.

A prometheus_client custom collector: each scrape turns the coordinator's
latest round of readings (node/coordinator/lag.py, taken every second) into
gauges, so a scrape costs dict reads on the broker's loop and never asks a
leader. Each group is reported by its coordinator only; scrape every broker
and a group's series move with its coordinator.

    rill_consumer_group_lag_records{group,topic,partition,member_id,client_id}
        log end minus the committed offset (partitions with a committed offset and a known log end)
    rill_consumer_group_lag_seconds{group,topic,partition,member_id,client_id}
        age of the first uncommitted record; 0 when caught up
    rill_consumer_group_lag_state{group,state}
        1 for the group's lag state (OK, CATCHING_UP, STALLED), 0 for the others

``member_id`` and ``client_id`` are the partition's owner, "" when no member holds it.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from rill.node.coordinator.group_coordinator import GroupCoordinator
from rill.node.coordinator.lag import LAG_STATES, GroupLag

PARTITION_LABELS = ["group", "topic", "partition", "member_id", "client_id"]


class GroupLagCollector(Collector):
    """Yields the lag gauges of the groups ``coordinator`` holds, as of its last lag round."""

    def __init__(self, coordinator: GroupCoordinator):
        self._coordinator = coordinator

    def collect(self) -> Iterator[GaugeMetricFamily]:
        records = GaugeMetricFamily("rill_consumer_group_lag_records",
                                    "Consumer group lag in records: log end minus the committed offset",
                                    labels=PARTITION_LABELS)
        seconds = GaugeMetricFamily("rill_consumer_group_lag_seconds",
                                    "Age of the group's first uncommitted record in the partition (0: caught up)",
                                    labels=PARTITION_LABELS)
        states = GaugeMetricFamily("rill_consumer_group_lag_state",
                                   "1 for the group's lag state (OK, CATCHING_UP, STALLED), 0 for the others",
                                   labels=["group", "state"])
        for group in self._coordinator.lag_readings():
            _add_group(group, records, seconds, states)
        yield records
        yield seconds
        yield states


def _add_group(group: GroupLag, records: GaugeMetricFamily, seconds: GaugeMetricFamily,
               states: GaugeMetricFamily) -> None:
    for reading in group.partitions:
        labels = [group.group_id, reading.partition.topic, str(reading.partition.partition),
                  reading.owner_member_id or "", reading.owner_client_id or ""]
        if reading.lag is not None:
            records.add_metric(labels, reading.lag)
        seconds.add_metric(labels, reading.lag_seconds)
    for state in LAG_STATES:
        states.add_metric([group.group_id, state], 1.0 if state == group.state else 0.0)
