"""A disk that fills up under a partition leader (a real full tmpfs, mounted as root).

The leader's replica of that partition goes offline on that broker: it says
so in its node status, leaves the ISR and another replica leads; no
acknowledged record is lost; its other partitions keep being served. The
failed append left no torn batch behind and no index entry pointing past the
file, and after a restart (with room again) the log recovers, catches up and
matches the other replicas.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from brokers import (
    AckedWriter,
    ClusterProcesses,
    check_acknowledged_records,
    read_partition,
    replica_batches,
    wait_until,
)
from rill.client import Producer
from rill.client.batch import iter_batches
from rill.cluster.probe import node_status
from rill.node.log.loader import CLEAN_SHUTDOWN_FILE
from rill.node.log.offset_index import ENTRY as OFFSET_INDEX_ENTRY

TOPIC = "fills-up"
OTHER_TOPIC = "keeps-working"
TMPFS_SIZE = "512k"  # fills after some 25,000 small records
ROOMY_TMPFS_SIZE = "64m"


def mount_tmpfs(directory: Path, size: str) -> None:
    """A tmpfs of ``size`` on ``directory``, holding the files ``directory`` had."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    saved = directory.with_name(directory.name + ".saved")
    shutil.copytree(directory, saved)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(saved)
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    shutil.copytree(saved, directory, dirs_exist_ok=True)
    shutil.rmtree(saved)


def unmount(directory: Path) -> None:
    subprocess.run(["umount", str(directory)], check=False, capture_output=True)


def check_no_torn_batch_and_no_dangling_index_entry(partition_dir: Path) -> None:
    """Read the segment files as they are on disk: whole, valid batches only, and every offset index entry
    at one of their starts."""
    for log_file in partition_dir.glob("*.log"):
        data = log_file.read_bytes()
        starts = {position for position, _ in iter_batches(data)}  # CorruptRecordError at a torn batch
        index = log_file.with_suffix(".index").read_bytes()
        for slot in range(0, len(index), OFFSET_INDEX_ENTRY.size):
            _, position = OFFSET_INDEX_ENTRY.unpack_from(index, slot)
            assert position in starts, f"{log_file.name}: an index entry points at byte {position}, not a batch"


@pytest.mark.cluster_settings(replica_lag_time_max_ms=3_000)
def test_failover_disk_full_takes_the_replica_offline_and_leadership_moves(cluster: ClusterProcesses):
    cluster.create_topic(TOPIC, config={"min.insync.replicas": 2})
    cluster.create_topic(OTHER_TOPIC, partitions=3)
    leader = cluster.leader_of(TOPIC)
    partition_dir = cluster[leader].partition_dir(TOPIC, 0)
    cluster.kill(leader, signal.SIGTERM)
    mount_tmpfs(partition_dir, TMPFS_SIZE)
    try:
        cluster.start(leader)
        cluster.wait_for_partition(TOPIC, lambda p: p.leader == leader and len(p.isr) == 3,
                                   f"broker {leader} to lead again, every replica in sync", timeout_s=60)
        other_partition = next(p for p in range(3) if cluster.leader_of(OTHER_TOPIC, p) == leader)

        with AckedWriter(cluster.bootstrap, TOPIC, max_in_flight_requests_per_connection=1, retry_backoff_ms=50,
                         records_per_s=8_000) as writer:
            report = wait_until(lambda: _offline_report(cluster, leader), 120,
                                f"broker {leader} to report {TOPIC}-0 offline once its disk is full")
            assert report.offline_partitions == [f"{TOPIC}-0"]
            moved = cluster.wait_for_leader(TOPIC, not_in=[leader], timeout_s=30)
            assert leader not in moved.isr
            writer.wait_more_acked(2_000, 60, "writes to go on at the new leader")
            with Producer(cluster.bootstrap_of([leader]), acks="all") as producer:
                stored = producer.send(OTHER_TOPIC, b"still served", partition=other_partition).result(30)
            assert cluster.leader_of(OTHER_TOPIC, other_partition) == leader and stored.offset == 0
        records = read_partition(cluster.bootstrap, TOPIC, min_end_offset=writer.end_offset())
        check_acknowledged_records(records, writer.acked, stored_at=writer.stored_at)
        assert "disk error, the replica goes offline" in cluster.output(leader)

        cluster.kill(leader, signal.SIGTERM)
        assert not (partition_dir / CLEAN_SHUTDOWN_FILE).exists(), "an offline log is recovered at the next start"
        check_no_torn_batch_and_no_dangling_index_entry(partition_dir)
        subprocess.run(["mount", "-o", f"remount,size={ROOMY_TMPFS_SIZE}", str(partition_dir)], check=True)
        cluster.start(leader)
        cluster.wait_in_isr(TOPIC, leader, timeout_s=60)
        # leadership may move back to the recovered broker meanwhile, whose high watermark then catches up
        acked_end = writer.end_offset()
        high_watermark = wait_until(lambda: _high_watermark_from(cluster, acked_end), 60,
                                    "the high watermark to cover every acknowledged record")
        cluster.stop_all(timeout_s=10)
        check_no_torn_batch_and_no_dangling_index_entry(partition_dir)
        mine = [batch for batch in replica_batches(partition_dir) if batch[1] < high_watermark]
        others = [node_id for node_id in cluster.node_ids if node_id != leader]
        theirs = [batch for batch in replica_batches(cluster[others[0]].partition_dir(TOPIC, 0))
                  if batch[1] < high_watermark]
        assert mine == theirs and mine[-1][1] == high_watermark - 1, "the recovered replica matches the others"
    finally:
        cluster.stop_all(timeout_s=10)
        unmount(partition_dir)


def _high_watermark_from(cluster: ClusterProcesses, end_offset: int) -> int | None:
    high_watermark = cluster.partition(TOPIC).high_watermark
    return high_watermark if high_watermark >= end_offset else None


def _offline_report(cluster: ClusterProcesses, node_id: int):
    report = node_status(cluster[node_id].bootstrap)
    return report if report is not None and report.offline_partitions else None
