"""Many partitions, replicated through fetch sessions: idle ones stay in sync, none loses a record.

Followers fetch in incremental fetch sessions: after the first fetch they
name only partitions whose state changed, and the leader counts each
session fetch as a caught-up fetch of every idle partition in it. So with
a short ``replica_lag_time_max_ms`` an idle partition must keep its full
ISR, and after a follower restarts every ISR must fill again, with every
acknowledged record on it.
"""

from __future__ import annotations

import time

import pytest
import zmq
from brokers import ClusterProcesses, read_partition, wait_until
from rill.client import Producer, protocol
from rill.client.errors import RillError
from rill.client.network import NetworkClient

TOPIC = "many"
PARTITIONS = 200
WRITTEN = 8  # partitions written to; the rest stay idle
LAG_MAX_MS = 2_000  # short, yet longer than a loaded machine's stalls


def _short_isrs(cluster: ClusterProcesses) -> int | None:
    """How many partitions of the topic have fewer than 3 in-sync replicas (None: no answer)."""
    context = zmq.Context()
    network = NetworkClient(context, "many-partitions-test")
    try:
        response = network.request(cluster.bootstrap.split(",")[0], protocol.METADATA,
                                   protocol.MetadataRequest([TOPIC]), 2_000)
    except RillError:
        return None
    finally:
        network.close()
        context.term()
    partitions = response.topics[0].partitions
    return sum(1 for p in partitions if len(p.isr) < 3) if len(partitions) == PARTITIONS else None


def _answered_short_isrs(cluster: ClusterProcesses) -> int:
    """``_short_isrs`` once a broker answers."""
    def answer() -> tuple[int] | None:
        count = _short_isrs(cluster)
        return None if count is None else (count,)
    return wait_until(answer, 10, "a metadata answer")[0]


def _write(cluster: ClusterProcesses, round_number: int) -> dict[int, list[bytes]]:
    acked: dict[int, list[bytes]] = {}
    with Producer(cluster.bootstrap, acks="all", linger_ms=2) as producer:
        sent = [(index, b"round-%d-%d" % (round_number, index)) for index in range(WRITTEN)]
        futures = [producer.send(TOPIC, value, partition=index) for index, value in sent]
        producer.flush(30)
    for (index, value), future in zip(sent, futures):
        if future.exception() is None:
            acked.setdefault(index, []).append(value)
    return acked


@pytest.mark.cluster_settings(replica_lag_time_max_ms=LAG_MAX_MS)
def test_idle_partitions_keep_their_isr_and_a_restarted_follower_rejoins_every_one(cluster: ClusterProcesses):
    with cluster.admin(request_timeout_ms=30_000) as admin:
        admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3)
    acked = _write(cluster, 0)
    assert sum(map(len, acked.values())) == WRITTEN
    wait_until(lambda: _short_isrs(cluster) == 0, 30, "every ISR full after the writes")
    time.sleep(2 * LAG_MAX_MS / 1000)  # idle for two lag times: only the session fetches keep them in sync
    assert _answered_short_isrs(cluster) == 0, "idle partitions left the ISR"

    cluster[3].stop()
    for index, values in _write(cluster, 1).items():
        acked.setdefault(index, []).extend(values)
    cluster.start(3)
    wait_until(lambda: _short_isrs(cluster) == 0, 60, "every ISR full again after the follower restarted")
    for index in range(WRITTEN):
        values = [record.value for record in read_partition(cluster.bootstrap, TOPIC, index)]
        assert all(value in values for value in acked.get(index, [])), f"partition {index} lost a record"
