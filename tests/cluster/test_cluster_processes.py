"""The rill command line against real broker processes on 127.0.0.1.

Each cluster gets a free base port and its own data dir; every process a test
starts is stopped by its pid at teardown, whatever the test did.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from rill.cluster.layout import free_base_port

RILL = str(Path(sys.executable).parent / "rill")
COMMAND_TIMEOUT_SECONDS = 90
# Teardown's grace after SIGTERM. Nodes of a cluster stopping together may wait out their
# controlled-shutdown timeout (15 s) for a controller that is gone; a test's data is thrown away anyway.
STOP_TIMEOUT_SECONDS = 3


def rill(*args: str, input: str | None = None, timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    return subprocess.run([RILL, *args], input=input, capture_output=True, text=True, timeout=timeout)


def recorded_pids(data_dir: Path) -> list[int]:
    return [int(path.read_text()) for path in sorted(data_dir.glob("node-*.pid"))]


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def is_rill_node(pid: int) -> bool:
    try:
        return b"rill.cluster" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def wait_until(condition, timeout_seconds: float, interval_seconds: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or time runs out; returns its last value."""
    deadline = time.monotonic() + timeout_seconds
    for _ in range(int(timeout_seconds / interval_seconds) + 1):
        if condition():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_seconds)
    return bool(condition())


def stop_recorded_processes(data_dir: Path) -> None:
    """Teardown: TERM, then KILL, every rill node process whose pid file is in the data dir."""
    pids = [pid for pid in recorded_pids(data_dir) if is_alive(pid) and is_rill_node(pid)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    if not wait_until(lambda: not any(map(is_alive, pids)), STOP_TIMEOUT_SECONDS):
        for pid in filter(is_alive, pids):
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not any(map(is_alive, pids)), STOP_TIMEOUT_SECONDS)


def cells(line: str, separator: str) -> list[str]:
    return [cell.strip() for cell in line.split(separator)[1:-1]]


class LocalCluster:
    """A cluster started with ``rill cluster up`` in a data dir of its own.

    ``node_count=None`` starts it without ``--nodes``: the default count, 3.
    """

    def __init__(self, data_dir: Path, node_count: int | None = 1) -> None:
        self.data_dir = data_dir
        self.node_count = node_count
        self.base_port = free_base_port(node_count or 3)
        self.bootstrap = ",".join(f"127.0.0.1:{self.base_port + index}" for index in range(node_count or 3))

    def up(self) -> subprocess.CompletedProcess:
        nodes = [] if self.node_count is None else ["--nodes", str(self.node_count)]
        return rill("cluster", "up", *nodes, "--base-port", str(self.base_port), "--data-dir", str(self.data_dir))

    def command(self, *args: str) -> subprocess.CompletedProcess:
        """A ``rill cluster`` subcommand on this cluster's data dir."""
        return rill("cluster", *args, "--data-dir", str(self.data_dir))

    def status(self) -> tuple[dict[int, dict[str, str]], str]:
        """``rill cluster status``: each node's row by column header, keyed by node id; and the controller line."""
        status = self.command("status")
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        headers = next(cells(line, "┃") for line in lines if "┃" in line)
        rows = [dict(zip(headers, cells(line, "│"))) for line in lines if line.startswith("│")]
        controller = next(line for line in lines if line.startswith("controller: "))
        return {int(row["node"]): row for row in rows}, controller

    def status_row(self, node_id: int = 1) -> dict[str, str]:
        """One node's row of the ``rill cluster status`` table, by column header."""
        return self.status()[0][node_id]

    def client(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """A client command (topic, produce, consume) against this cluster."""
        return rill(*args, "--bootstrap", self.bootstrap, input=input)


def start_cluster(data_dir: Path, node_count: int | None = 1) -> Iterator[LocalCluster]:
    cluster = LocalCluster(data_dir, node_count)
    try:
        started = cluster.up()
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == cluster.bootstrap
        yield cluster
    finally:
        stop_recorded_processes(data_dir)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One running cluster for the tests that only use it."""
    yield from start_cluster(tmp_path_factory.mktemp("shared-cluster"))


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A running one-node cluster for one test that stops or restarts nodes."""
    yield from start_cluster(tmp_path / "data")


@pytest.fixture
def three_nodes(tmp_path: Path) -> Iterator[LocalCluster]:
    """A running cluster of the default size (three nodes, started without --nodes) for one test."""
    yield from start_cluster(tmp_path / "data", node_count=None)


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(cluster: LocalCluster, name: str, *options: str) -> None:
    created = cluster.client("topic", "create", name, *options)
    assert created.returncode == 0, created.stderr


def test_status_shows_the_node_running_and_answering(shared_cluster: LocalCluster) -> None:
    row = shared_cluster.status_row()
    assert (row["process"], row["alive"], row["answers"]) == ("running", "yes", "yes")
    assert row["pid"] == str(recorded_pids(shared_cluster.data_dir)[0])


def test_up_refuses_while_the_cluster_runs(shared_cluster: LocalCluster) -> None:
    again = shared_cluster.up()
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert all(is_alive(pid) for pid in recorded_pids(shared_cluster.data_dir))


def test_topic_create_list_describe_delete(shared_cluster: LocalCluster) -> None:
    name = unique_topic("orders")
    create_topic(shared_cluster, name, "--partitions", "3", "--config", "retention.ms=3600000")
    assert name in shared_cluster.client("topic", "list").stdout.split()
    described = shared_cluster.client("topic", "describe", name)
    assert described.returncode == 0, described.stderr
    assert "leader epoch" in described.stdout and "retention.ms" in described.stdout and "3600000" in described.stdout
    assert "3 partition(s)" in described.stdout
    deleted = shared_cluster.client("topic", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert wait_until(lambda: name not in shared_cluster.client("topic", "list").stdout.split(), 20)


def test_client_errors_are_one_line_without_traceback(shared_cluster: LocalCluster) -> None:
    missing = shared_cluster.client("topic", "describe", unique_topic("missing"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: UnknownTopicError:"), missing.stderr
    name = unique_topic("twice")
    create_topic(shared_cluster, name)
    again = shared_cluster.client("topic", "create", name)
    assert again.returncode == 1
    assert again.stderr.startswith("error: TopicAlreadyExistsError:"), again.stderr
    assert "Traceback" not in missing.stderr + again.stderr


def test_produced_lines_come_back_from_the_beginning(shared_cluster: LocalCluster) -> None:
    name = unique_topic("lines")
    create_topic(shared_cluster, name)
    lines = [f"order {index} créée" for index in range(20)]
    produced = shared_cluster.client("produce", name, "--key", "customer-7", input="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    assert "acknowledged 20 of 20" in produced.stdout
    consumed = shared_cluster.client("consume", name, "--from-beginning", "--max-messages", "20",
                                     "--timeout-ms", "30000", "--print-key")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == [f"customer-7\t{line}" for line in lines]


def test_consume_without_from_beginning_sees_only_new_records(shared_cluster: LocalCluster) -> None:
    name = unique_topic("latest")
    create_topic(shared_cluster, name)
    assert shared_cluster.client("produce", name, input="old\n").returncode == 0
    consumer = subprocess.Popen([RILL, "consume", name, "--max-messages", "1", "--timeout-ms", "30000",
                                 "--bootstrap", shared_cluster.bootstrap],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The consumer starts at the end only once it has joined, so keep producing until it has seen a record.
        assert wait_until(lambda: shared_cluster.client("produce", name, input="new\n").returncode == 0
                          and consumer.poll() is not None, 30, interval_seconds=0.5)
        output, errors = consumer.communicate(timeout=COMMAND_TIMEOUT_SECONDS)
    finally:
        consumer.kill()
        consumer.wait(timeout=COMMAND_TIMEOUT_SECONDS)
    assert consumer.returncode == 0, errors
    assert output.splitlines() == ["new"]


def test_kill_start_and_down(own_cluster: LocalCluster) -> None:
    name = unique_topic("durable")
    create_topic(own_cluster, name)
    assert own_cluster.client("produce", name, input="kept\n").returncode == 0
    [first_pid] = recorded_pids(own_cluster.data_dir)

    assert own_cluster.command("kill", "1", "--signal", "STOP").returncode == 0
    stopped = own_cluster.status_row()
    assert (stopped["process"], stopped["alive"]) == ("stopped", "yes")
    assert own_cluster.command("kill", "1", "--signal", "CONT").returncode == 0
    assert wait_until(lambda: own_cluster.status_row()["answers"] == "yes", 20)

    killed = own_cluster.command("kill", "1")
    assert killed.returncode == 0, killed.stderr
    assert not is_alive(first_pid)
    assert own_cluster.status_row()["alive"] == "no"  # the process is gone, or a zombie not yet reaped

    started = own_cluster.command("start", "1")
    assert started.returncode == 0, started.stderr
    [second_pid] = recorded_pids(own_cluster.data_dir)
    assert second_pid != first_pid and is_alive(second_pid)
    consumed = own_cluster.client("consume", name, "--from-beginning", "--max-messages", "1", "--timeout-ms", "30000")
    assert consumed.stdout.splitlines() == ["kept"], consumed.stderr

    down = own_cluster.command("down")
    assert down.returncode == 0, down.stderr
    assert not is_alive(second_pid)
    assert recorded_pids(own_cluster.data_dir) == []


def test_up_fails_with_the_log_when_a_node_cannot_start(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "data")
    (cluster.data_dir / "1").mkdir(parents=True)
    (cluster.data_dir / "1" / "cluster.id").write_text("another-cluster\n")  # the node refuses this data dir
    try:
        started = rill("cluster", "up", "--nodes", "1", "--base-port", str(cluster.base_port),
                       "--data-dir", str(cluster.data_dir), "--timeout", "15")
    finally:
        stop_recorded_processes(cluster.data_dir)
    assert started.returncode == 1
    assert "last lines of" in started.stderr and "node-1.log" in started.stderr
    assert "another-cluster" in started.stderr
    assert not any(map(is_alive, recorded_pids(cluster.data_dir)))


def partition_rows(cluster: LocalCluster, topic: str) -> list[dict[str, str]]:
    """The partition table of ``rill topic describe``, one dict per partition by column header."""
    described = cluster.client("topic", "describe", topic)
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    headers = next(cells(line, "┃") for line in lines if "┃" in line and "partition" in line)
    rows = [dict(zip(headers, cells(line, "│"))) for line in lines if line.startswith("│")]
    return [row for row in rows if row.keys() >= {"leader", "replicas", "isr"}]


def test_three_nodes_status_kill_start_and_rebalance(three_nodes: LocalCluster) -> None:
    cluster = three_nodes
    rows, controller_line = cluster.status()
    assert sorted(rows) == [1, 2, 3]
    assert all((row["alive"], row["answers"], row["fenced"]) == ("yes", "yes", "no") for row in rows.values())
    assert [row["port"] for row in rows.values()] == [str(cluster.base_port + index) for index in range(3)]
    assert sorted(row["raft role"] for row in rows.values()) == ["follower", "follower", "leader"]
    [controller] = [node_id for node_id, row in rows.items() if row["controller"] == "yes"]
    assert rows[controller]["raft role"] == "leader"
    assert controller_line == f"controller: node {controller}"

    name = unique_topic("replicated")
    create_topic(cluster, name, "--partitions", "3", "--replication-factor", "3")
    produced = cluster.client("produce", name, input="".join(f"event {index}\n" for index in range(30)))
    assert "acknowledged 30 of 30" in produced.stdout, produced.stderr
    partitions = partition_rows(cluster, name)
    assert len(partitions) == 3
    assert all(len(row["isr"].split(",")) == 3 and row["high watermark"].isdigit() for row in partitions)
    assert sum(int(row["high watermark"]) for row in partitions) == 30
    assert sum(int(row["partitions led"]) for row in cluster.status()[0].values()) >= 3

    killed = cluster.command("kill", "2")
    assert killed.returncode == 0, killed.stderr

    def others_see_node_2_gone() -> bool:
        rows, line = cluster.status()
        return (rows[2]["alive"] == "no" and rows[2]["raft role"] == "-"
                and all(rows[node_id]["answers"] == "yes" for node_id in (1, 3))
                and re.fullmatch(r"controller: node [13]", line) is not None
                and sum(int(rows[node_id]["under-replicated"]) for node_id in (1, 3)) >= 3)

    assert wait_until(others_see_node_2_gone, 30), cluster.command("status").stdout

    started = cluster.command("start", "2")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("node 2: pid ")

    def all_in_sync() -> bool:
        rows = cluster.status()[0]
        return all(row["answers"] == "yes" and row["under-replicated"] == "0" for row in rows.values())

    assert wait_until(all_in_sync, 30), cluster.command("status").stdout
    rebalanced = cluster.client("cluster", "rebalance-leaders")
    assert rebalanced.returncode == 0, rebalanced.stderr
    assert re.fullmatch(r"moved leadership of \d+ partition\(s\) to their preferred replica\n", rebalanced.stdout)
    assert wait_until(lambda: all(row["leader"] == row["replicas"].split(",")[0]
                                  for row in partition_rows(cluster, name)), 30)
    consumed = cluster.client("consume", name, "--from-beginning", "--max-messages", "30", "--timeout-ms", "30000")
    assert sorted(consumed.stdout.splitlines()) == sorted(f"event {index}" for index in range(30)), consumed.stderr


def test_start_without_a_majority_does_not_wait_for_clients(three_nodes: LocalCluster) -> None:
    cluster = three_nodes
    for node_id in ("1", "2", "3"):
        assert cluster.command("kill", node_id).returncode == 0
    alone = cluster.command("start", "1", "--timeout", "20")
    assert alone.returncode == 0, alone.stderr
    assert "needs 2 of the 3 nodes running" in alone.stderr
    node_1 = cluster.status_row(1)
    assert (node_1["alive"], node_1["answers"]) == ("yes", "no")
    assert cluster.status_row(2)["alive"] == "no"

    rest = cluster.command("start", "2", "3")
    assert rest.returncode == 0, rest.stderr
    assert "needs" not in rest.stderr
    assert wait_until(lambda: all(row["answers"] == "yes" for row in cluster.status()[0].values()), 30)
