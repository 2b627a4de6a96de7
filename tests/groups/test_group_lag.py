"""Consumer lag computed by the coordinator, on a real 3-broker cluster: records, seconds, owner and lag state.

The same numbers reach Admin.describe_group, ``rill groups describe``,
Consumer.lag() and every broker's /metrics. Records are stamped by the test
(``timestamp_ms``), so lag in seconds has exact bounds: the age of the first
uncommitted record between just before and just after the call. The
scenario test pauses one of two member processes (SIGSTOP) for 20 s while a
producer writes 50 records/s: its partition's lag in seconds reads 20 ± 2 s,
its owner stays the paused member (session timeout 60 s), the group turns
STALLED (group_stalled_after_ms, 10 s), and after SIGCONT goes back to OK.
The broker API behind it, OFFSET_TIMESTAMPS, is asked directly too: exact
answers on the inter-broker port, refused on the client port, bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import zmq
from brokers import ClusterProcesses, poll_until_assigned, wait_until
from click.testing import CliRunner
from group_members import CONSUMER_SCRIPT, ConsumerProcess
from prometheus_client.parser import text_string_to_metric_families
from rill.client import Admin, Consumer, Producer, TopicPartition, protocol
from rill.client.errors import (
    ClusterAuthorizationError,
    ConsumerClosedError,
    InvalidConfigError,
    InvalidRequestError,
    NotLeaderError,
    UnknownTopicError,
    error_for_code,
)
from rill.client.types import GroupDescription
from rill.cluster.cli import main as rill_cli
from rill.node.cluster_secret import ClusterSecret
from rill.node.coordinator.offset_records import OFFSETS_TOPIC, partition_for
from rill.node.network.internal_listener import curve_client

RECORDS_PER_PARTITION = 10
PAUSE_S = 20.0
RATE_PER_S = 50
PAUSED_SESSION_TIMEOUT_MS = 60_000  # longer than the pause: the paused member stays the owner
STALLED_AFTER_S = 10.0  # the brokers' default group_stalled_after_ms
SLACK_S = 0.01  # the coordinator's clock reads whole milliseconds


@pytest.fixture
def admin(group_cluster: ClusterProcesses):
    with group_cluster.admin() as client:
        yield client


def stamped_topic(cluster: ClusterProcesses, admin: Admin, topic: str, partitions: int, base_ms: int) -> None:
    """A topic whose record i of each partition is stamped base_ms + i seconds (one batch per partition)."""
    admin.create_topic(topic, partitions=partitions, replication_factor=3)
    cluster.wait_full_isr(topic, partitions)
    with Producer(cluster.bootstrap, linger_ms=50) as producer:
        for partition in range(partitions):
            for index in range(RECORDS_PER_PARTITION):
                producer.send(topic, b"%d" % index, partition=partition, timestamp_ms=base_ms + index * 1000)
        producer.flush()


def described(admin: Admin, group: str) -> tuple[float, GroupDescription, float]:
    """(wall clock before, the description, wall clock after)."""
    before = time.time()
    description = admin.describe_group(group)
    return before, description, time.time()


def age_bounds(before: float, after: float, timestamp_ms: int) -> tuple[float, float]:
    return before - timestamp_ms / 1000 - SLACK_S, after - timestamp_ms / 1000 + SLACK_S


def cli_rows(cluster: ClusterProcesses, group: str) -> tuple[list[str], list[list[str]]]:
    """``rill groups describe GROUP``: its lines, and the cells of its offsets table."""
    result = CliRunner().invoke(rill_cli, ["groups", "describe", group, "--bootstrap", cluster.bootstrap])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("offsets: "))
    cells = []
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            cells.append([cell.strip() for cell in line.split("│")[1:-1]])
    return lines, cells


def scraped_lag(cluster: ClusterProcesses, group: str) -> dict[str, dict]:
    """The group's lag gauges from every broker's /metrics (only its coordinator has them)."""
    found: dict[str, dict] = {"records": {}, "seconds": {}, "state": {}}
    for node in cluster.nodes.values():
        url = f"http://{node.address.host}:{node.address.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("group") != group:
                    continue
                if sample.name == "rill_consumer_group_lag_state":
                    found["state"][sample.labels["state"]] = sample.value
                elif sample.name in ("rill_consumer_group_lag_records", "rill_consumer_group_lag_seconds"):
                    key = (int(sample.labels["partition"]), sample.labels["member_id"], sample.labels["client_id"])
                    found[sample.name.rsplit("_", 1)[1]][key] = sample.value
    return found


def test_lag_in_records_and_seconds_matches_admin_the_cli_and_metrics(group_cluster, admin, topic_name):
    base_ms = (int(time.time()) - 100) * 1000
    stamped_topic(group_cluster, admin, topic_name, 3, base_ms)
    group = f"lag-{topic_name}"
    admin.reset_offsets(group, topic_name, to_offset=4, partitions=[0])  # inside the batch: the record's own time
    admin.reset_offsets(group, topic_name, to_offset=0, partitions=[1])  # the batch's first record
    admin.reset_offsets(group, topic_name, to_latest=True, partitions=[2])  # caught up
    coordinator = admin.describe_topic(OFFSETS_TOPIC).partitions[partition_for(group)].leader
    leaders = {info.leader for info in admin.describe_topic(topic_name).partitions}
    assert leaders - {coordinator}, "some partition is led by another broker than the coordinator"

    before, description, after = described(admin, group)
    first, second, third = description.partitions
    assert [(p.partition, p.committed_offset, p.log_end_offset, p.lag, p.owner) for p in description.partitions] == [
        (0, 4, 10, 6, None), (1, 0, 10, 10, None), (2, 10, 10, 0, None)]
    low, high = age_bounds(before, after, base_ms + 4_000)
    assert low <= first.lag_seconds <= high
    low, high = age_bounds(before, after, base_ms)
    assert low <= second.lag_seconds <= high
    assert third.lag_seconds == 0.0
    assert description.total_lag == 16
    assert description.lag_state in ("CATCHING_UP", "STALLED")  # records 90 s old wait; nothing commits

    lines, cells = cli_rows(group_cluster, group)
    assert lines[1] in ("lag state: CATCHING_UP", "lag state: STALLED")
    assert [row[:5] for row in cells] == [[topic_name, str(p.partition), str(p.committed_offset), "10", str(p.lag)]
                                          for p in description.partitions]
    assert [row[6] for row in cells] == ["-", "-", "-"]
    for row, lag in zip(cells, description.partitions, strict=True):
        assert lag.lag_seconds - 0.05 <= float(row[5]) <= lag.lag_seconds + 30  # a moment later, rounded to 0.1 s

    def metrics_agree() -> bool:
        scraped = scraped_lag(group_cluster, group)
        return (scraped["records"] == {(p.partition, "", ""): p.lag for p in description.partitions}
                and sorted(scraped["state"].values()) == [0.0, 0.0, 1.0]
                and scraped["seconds"][(2, "", "")] == 0.0 and scraped["seconds"][(0, "", "")] > 90)

    wait_until(metrics_agree, 15, "the brokers' /metrics to show the lag Admin shows")

    admin.reset_offsets(group, topic_name, to_latest=True)
    _, caught_up, _ = described(admin, group)
    assert [(p.lag, p.lag_seconds) for p in caught_up.partitions] == [(0, 0.0)] * 3
    assert (caught_up.total_lag, caught_up.lag_state) == (0, "OK")
    wait_until(lambda: scraped_lag(group_cluster, group)["state"].get("OK") == 1.0, 15, "/metrics to say OK")


def test_consumer_lag_covers_the_members_own_partitions(group_cluster, admin, topic_name):
    base_ms = (int(time.time()) - 50) * 1000
    stamped_topic(group_cluster, admin, topic_name, 2, base_ms)
    group = f"own-lag-{topic_name}"
    with Consumer(group_cluster.bootstrap, group_id=group, topics=[topic_name], enable_auto_commit=False,
                  auto_offset_reset="earliest", heartbeat_interval_ms=100, client_id="lag-member") as consumer:
        assert consumer.lag() == {}  # nothing assigned yet
        poll_until_assigned(consumer, 2)
        consumer.commit(offsets={TopicPartition(topic_name, 0): 3, TopicPartition(topic_name, 1): 10})
        before = time.time()
        own = consumer.lag()
        after = time.time()
        [member] = admin.describe_group(group).members
        assert set(own) == {TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)}
        zero, one = own[TopicPartition(topic_name, 0)], own[TopicPartition(topic_name, 1)]
        assert (zero.committed_offset, zero.log_end_offset, zero.lag, zero.owner) == (3, 10, 7, member.member_id)
        low, high = age_bounds(before, after, base_ms + 3_000)
        assert low <= zero.lag_seconds <= high
        assert (one.lag, one.lag_seconds, one.owner) == (0, 0.0, member.member_id)
        by_admin = {(p.partition, p.lag, p.owner) for p in admin.describe_group(group).partitions}
        assert by_admin == {(p.partition, p.lag, p.owner) for p in own.values()}
    with pytest.raises(ConsumerClosedError):
        consumer.lag()
    with Consumer(group_cluster.bootstrap) as alone:
        with pytest.raises(InvalidConfigError, match="group_id"):
            alone.lag()


def offset_timestamps(cluster: ClusterProcesses, node_id: int, entries: list[tuple[int, int]], topic: str,
                      internal: bool = True) -> protocol.OffsetTimestampsResponse:
    """One OFFSET_TIMESTAMPS request to a broker: on its inter-broker port with the cluster's key (as a
    coordinator asks), or on its client port; raises the typed error of a refused request."""
    address = cluster[node_id].address
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    try:
        if internal:
            curve_client(ClusterSecret(cluster.cluster_secret))(dealer)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://{address.host}:{address.internal_port if internal else address.port}")
        request = protocol.OffsetTimestampsRequest([protocol.OffsetTimestampTopic(
            topic, [protocol.OffsetTimestampPartition(partition, offset) for partition, offset in entries])])
        dealer.send(protocol.encode_request(protocol.OFFSET_TIMESTAMPS, 1, request, "lag-test"))
        assert dealer.poll(10_000), f"broker {node_id} did not answer"
        envelope = protocol.decode_response_envelope(dealer.recv())
    finally:
        dealer.close()
        context.term()
    if envelope.error_code:
        raise error_for_code(envelope.error_code, envelope.error_message)
    return protocol.decode_response_body(protocol.OFFSET_TIMESTAMPS.key, envelope.body)


def test_offset_timestamps_answers_brokers_only_within_bounds(group_cluster, admin, topic_name):
    base_ms = (int(time.time()) - 30) * 1000
    stamped_topic(group_cluster, admin, topic_name, 1, base_ms)
    leader = admin.describe_topic(topic_name).partitions[0].leader
    follower = next(node_id for node_id in group_cluster.node_ids if node_id != leader)
    answer = offset_timestamps(group_cluster, leader, [(0, 4), (0, 0), (0, -1), (0, 10), (9, 0)], topic_name)
    found = [(a.partition, a.offset, a.error_code, a.high_watermark, a.timestamp) for a in answer.topics[0].partitions]
    assert found == [(0, 4, 0, 10, base_ms + 4_000), (0, 0, 0, 10, base_ms), (0, -1, 0, 10, -1), (0, 10, 0, 10, -1),
                     (9, 0, UnknownTopicError.code, -1, -1)]
    [elsewhere] = offset_timestamps(group_cluster, follower, [(0, 4)], topic_name).topics[0].partitions
    assert elsewhere.error_code == NotLeaderError.code
    too_many = [(0, 0)] * (protocol.OFFSET_TIMESTAMPS_MAX_PARTITIONS + 1)
    with pytest.raises(InvalidRequestError, match="more than"):
        offset_timestamps(group_cluster, leader, too_many, topic_name)
    for node_id in group_cluster.node_ids:
        with pytest.raises(ClusterAuthorizationError, match="broker-only"):
            offset_timestamps(group_cluster, node_id, [(0, 4)], topic_name, internal=False)


class PausableMember(ConsumerProcess):
    """A member process (consumer_process.py: commits after every poll) with a long session timeout."""

    def __init__(self, bootstrap: str, group: str, topic: str, out: Path):
        self.out = out
        self._log = open(out.with_suffix(".log"), "w")
        self.process = subprocess.Popen(
            [sys.executable, str(CONSUMER_SCRIPT), "--bootstrap", bootstrap, "--group", group, "--topic", topic,
             "--out", str(out), "--session-timeout-ms", str(PAUSED_SESSION_TIMEOUT_MS)],
            stdout=subprocess.DEVNULL, stderr=self._log)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
        super().stop()


class SteadyProducer:
    """A thread writing RATE_PER_S records a second, alternating over two partitions, until stopped."""

    def __init__(self, bootstrap: str, topic: str):
        self._bootstrap, self._topic = bootstrap, topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with Producer(self._bootstrap, linger_ms=5) as producer:
            started = time.monotonic()
            for number in range(10_000_000):
                if self._stop.wait(max(0.0, started + number / RATE_PER_S - time.monotonic())):
                    break
                producer.send(self._topic, b"%d" % number, partition=number % 2)


def test_a_paused_member_makes_its_partition_lag_and_the_group_stall(group_cluster, admin, topic_name, tmp_path):
    admin.create_topic(topic_name, partitions=2, replication_factor=3)
    group_cluster.wait_full_isr(topic_name, 2)
    group = f"paused-{topic_name}"
    members = [PausableMember(group_cluster.bootstrap, group, topic_name, tmp_path / f"member-{n}.out")
               for n in range(2)]
    try:
        with SteadyProducer(group_cluster.bootstrap, topic_name):
            run_pause_scenario(admin, group_cluster, group, members)
        wait_until(lambda: admin.describe_group(group).total_lag == 0, 30, "the members to commit every record")
        caught_up = admin.describe_group(group)
        assert [p.lag_seconds for p in caught_up.partitions] == [0.0, 0.0]
        assert caught_up.lag_state == "OK"
    finally:
        for member in members:
            member.stop()


def in_state(admin: Admin, group: str, lag_state: str) -> GroupDescription | None:
    description = admin.describe_group(group)
    return description if description.lag_state == lag_state else None


def run_pause_scenario(admin: Admin, cluster: ClusterProcesses, group: str, members: list[PausableMember]) -> None:
    def settled() -> GroupDescription | None:
        description = cluster.try_(lambda: admin.describe_group(group))  # None until a member joined
        if description is None:
            return None
        owners = [p.owner for p in description.partitions]
        steady = all(p.lag_seconds < 5 for p in description.partitions) and description.lag_state == "OK"
        split = len(description.partitions) == 2 and None not in owners and len(set(owners)) == 2
        return description if steady and split and all(len(m.owned()) == 1 for m in members) else None

    before = wait_until(settled, 60, "each member to own one partition and keep up")
    victim = members[0]
    [paused_partition] = victim.owned()
    paused = next(p for p in before.partitions if p.partition == paused_partition)
    other = next(p for p in before.partitions if p.partition != paused_partition)

    os.kill(victim.process.pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    stalled = wait_until(lambda: in_state(admin, group, "STALLED"), PAUSE_S, "the group's lag state to turn STALLED")
    assert time.monotonic() - paused_at >= STALLED_AFTER_S - 1
    by_partition = {p.partition: p for p in stalled.partitions}
    assert by_partition[paused_partition].owner == paused.owner
    assert by_partition[other.partition].lag_seconds < 5  # the other member keeps committing

    time.sleep(max(0.0, paused_at + PAUSE_S - time.monotonic()))  # the scenario: a 20 s pause

    def paused_reading():
        reading = next(p for p in admin.describe_group(group).partitions if p.partition == paused_partition)
        return reading if PAUSE_S - 2 <= reading.lag_seconds <= PAUSE_S + 2 else None

    reading = wait_until(paused_reading, 2, "the paused partition's lag to read 20 ± 2 s")
    assert reading.owner == paused.owner and reading.lag > 0
    scraped = scraped_lag(cluster, group)
    assert scraped["state"]["STALLED"] == 1.0
    [(key, seconds)] = [(key, value) for key, value in scraped["seconds"].items() if key[0] == paused_partition]
    assert key[1] == paused.owner and seconds >= STALLED_AFTER_S

    os.kill(victim.process.pid, signal.SIGCONT)
    recovered = wait_until(lambda: in_state(admin, group, "OK"), 30,
                           "the lag state to go back to OK once the member caught up")
    assert [p.owner for p in recovered.partitions] == [p.owner for p in before.partitions]
    assert re.fullmatch(r"[0-9a-f]{32}", paused.owner)
