"""The rill command line without brokers: argument errors, error lines, and the console producer and consumer.

Client classes are replaced by scripted fakes, so these tests check what the
CLI does with answers and failures, not the client itself.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import rill.client
from click.testing import CliRunner
from rill.client import protocol
from rill.client.errors import (
    NotControllerError,
    NotEnoughReplicasError,
    UnknownTopicError,
)
from rill.client.types import Record
from rill.cluster import cli, launcher, probe, tables
from rill.cluster.cli import main
from rill.cluster.launcher import NodeStatus, ProcessState

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    """The command failed with this exit code, and its stderr ends with one ``error:`` line holding the fragments."""
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_node_with_unparsable_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("node_id = [\n")
    assert_one_line_error(invoke("node", "--id", "1", "--config", str(config)), 2, "invalid node config", str(config))


def test_node_with_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert_one_line_error(invoke("node", "--id", "1", "--config", str(missing)), 2, str(missing))


def test_node_id_outside_the_node_list_exits_2() -> None:
    assert_one_line_error(invoke("node", "--id", "3", "--nodes", "2"), 2, "node id 3")


def test_unknown_signal_name_is_rejected(tmp_path: Path) -> None:
    result = invoke("cluster", "kill", "1", "--signal", "HUP", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--signal" in result.stderr


def test_signal_names_are_case_insensitive(tmp_path: Path) -> None:
    result = invoke("cluster", "kill", "1", "--signal", "term", "--data-dir", str(tmp_path))
    assert_one_line_error(result, 1, "no cluster in")


def test_status_without_a_cluster_is_a_one_line_error(tmp_path: Path) -> None:
    assert_one_line_error(invoke("cluster", "status", "--data-dir", str(tmp_path)), 1, "rill cluster up")


def test_down_without_a_cluster_succeeds(tmp_path: Path) -> None:
    result = invoke("cluster", "down", "--data-dir", str(tmp_path))
    assert result.exit_code == 0
    assert "nothing to stop" in result.stderr


def test_up_refuses_a_layout_other_than_the_recorded_one(tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("node_count = 3\nbase_port = 9092\n")
    result = invoke("cluster", "up", "--nodes", "1", "--data-dir", str(tmp_path))
    assert_one_line_error(result, 1, "3 node(s)")
    assert not list(tmp_path.glob("node-*"))


def test_up_refuses_ports_beyond_65535(tmp_path: Path) -> None:
    result = invoke("cluster", "up", "--nodes", "1", "--base-port", "65400", "--data-dir", str(tmp_path))
    assert_one_line_error(result, 1, "65800")
    assert not (tmp_path / "cluster.toml").exists()


def test_up_refuses_ports_that_another_process_listens_on(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = invoke("cluster", "up", "--nodes", "1", "--base-port", str(port), "--data-dir", str(tmp_path))
    assert_one_line_error(result, 1, str(port), "in use")
    assert not list(tmp_path.glob("node-*"))


def test_start_of_a_node_outside_the_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("node_count = 1\nbase_port = 9092\n")
    assert_one_line_error(invoke("cluster", "start", "2", "--data-dir", str(tmp_path)), 1, "not 2")


def test_topic_config_must_be_key_value() -> None:
    result = invoke("topic", "create", "orders", "--config", "retention.ms")
    assert result.exit_code == 2
    assert "key=value" in result.stderr


def test_python_dash_m_is_the_same_command_line() -> None:
    console_script = Path(sys.executable).parent / "rill"
    as_module = subprocess.run([sys.executable, "-m", "rill.cluster", "--help"], capture_output=True, timeout=60)
    as_script = subprocess.run([str(console_script), "--help"], capture_output=True, timeout=60)
    assert as_module.returncode == as_script.returncode == 0
    assert as_module.stdout == as_script.stdout


class FakeProducer:
    """Acknowledges every record except those whose value is b"fail"."""

    sent: list[tuple[str, bytes, bytes | None]] = []

    def __init__(self, bootstrap: str, **settings) -> None:
        self.settings = settings

    def __enter__(self) -> "FakeProducer":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> Future:
        FakeProducer.sent.append((topic, value, key))
        future: Future = Future()
        if value == b"fail":
            future.set_exception(NotEnoughReplicasError("isr 1 < min.insync.replicas 2"))
        else:
            future.set_result(None)
        return future

    def flush(self) -> None:
        pass


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    monkeypatch.setattr(rill.client, "Producer", FakeProducer, raising=False)
    FakeProducer.sent = []
    return FakeProducer


def test_produce_sends_one_record_per_line_without_newlines(fake_producer: type[FakeProducer]) -> None:
    result = invoke("produce", "orders", "--key", "k1", input=b"first\nsecond\n\nlast-without-newline")
    assert result.exit_code == 0, result.output
    values = [b"first", b"second", b"", b"last-without-newline"]
    assert fake_producer.sent == [("orders", value, b"k1") for value in values]
    assert "acknowledged 4 of 4" in result.stdout


def test_produce_reports_failed_records_as_one_error_line(fake_producer: type[FakeProducer]) -> None:
    result = invoke("produce", "orders", input=b"ok\nfail\nok\n")
    assert "acknowledged 2 of 3" in result.stdout
    assert_one_line_error(result, 1, "NotEnoughReplicasError", "min.insync.replicas")


def test_client_errors_end_as_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def raise_unknown_topic(*args, **kwargs):
        raise UnknownTopicError("topic orders does not exist")

    monkeypatch.setattr(rill.client, "Producer", raise_unknown_topic, raising=False)
    result = invoke("produce", "orders", input=b"x\n")
    assert_one_line_error(result, 1, "error: UnknownTopicError: topic orders does not exist")
    assert "Traceback" not in result.output


class FakeConsumer:
    """Returns scripted batches from poll, then empty batches."""

    batches: list[list[Record]] = []
    settings: dict = {}

    def __init__(self, bootstrap: str, topics: list[str], **settings) -> None:
        FakeConsumer.settings = settings
        self.remaining = list(FakeConsumer.batches)

    def __enter__(self) -> "FakeConsumer":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def poll(self, timeout: float) -> list[Record]:
        return self.remaining.pop(0) if self.remaining else []


def record(offset: int, value: bytes | None, key: bytes | None = None) -> Record:
    return Record("orders", 0, offset, 0, key, value, {})


@pytest.fixture
def fake_consumer(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    monkeypatch.setattr(rill.client, "Consumer", FakeConsumer, raising=False)
    FakeConsumer.batches = [[record(0, b"a"), record(1, "é".encode())], [], [record(2, b"\xff"), record(3, None)]]
    return FakeConsumer


def test_consume_stops_after_max_messages(fake_consumer: type[FakeConsumer]) -> None:
    result = invoke("consume", "orders", "--from-beginning", "--max-messages", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["a", "é", "\ufffd"]
    assert fake_consumer.settings["auto_offset_reset"] == "earliest"


def test_consume_stops_when_idle_and_starts_at_the_end_by_default(fake_consumer: type[FakeConsumer]) -> None:
    result = invoke("consume", "orders", "--timeout-ms", "300", "--print-offset", "--print-key")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["0:0\tnull\ta", "0:1\tnull\té", "0:2\tnull\t\ufffd", "0:3\tnull\tnull"]
    assert fake_consumer.settings["auto_offset_reset"] == "latest"
    assert "consumed 4 record(s)" in result.stderr


def test_the_default_cluster_is_three_nodes_and_clients_bootstrap_from_all() -> None:
    assert cli.DEFAULT_NODE_COUNT == 3
    assert cli.DEFAULT_BOOTSTRAP == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert "else 3]" in invoke("cluster", "up", "--help").stdout


def report(node_id: int, controller_id: int, role: str = "follower", led: int = 0,
           under_replicated: int = 0, offline: tuple[str, ...] = ()) -> protocol.NodeStatusResponse:
    return protocol.NodeStatusResponse(node_id, role, controller_id, controller_id, False, 4, led, under_replicated,
                                       list(offline), 0.25, 1.5, 12.0)


def node(node_id: int, report: protocol.NodeStatusResponse | None, state: ProcessState = ProcessState.RUNNING,
         answers: bool | None = True) -> NodeStatus:
    return NodeStatus(node_id, 100 + node_id, state, answers, 9091 + node_id, Path(f"/data/{node_id}"), report)


def test_status_shows_each_nodes_report_and_names_the_controller(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("node_count = 3\nbase_port = 9092\n")
    statuses = [node(1, report(1, 2, led=2, under_replicated=1, offline=("orders-0", "orders-3"))),
                node(2, report(2, 2, "leader", led=1)), node(3, None, ProcessState.GONE, None)]
    monkeypatch.setattr(launcher, "node_statuses", lambda layout: statuses)
    result = invoke("cluster", "status", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    headers = next([cell.strip() for cell in line.split("┃")[1:-1]] for line in lines if "┃" in line)
    assert headers == ["node", "pid", "process", "alive", "answers", "port", "raft role", "controller", "fenced",
                       "partitions led", "under-replicated", "offline", "loop lag p99/max ms", "data dir"]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    assert rows == [
        ["1", "101", "running", "yes", "yes", "9092", "follower", "no", "no", "2", "1", "orders-0,orders-3",
         "1.5/12.0", "/data/1"],
        ["2", "102", "running", "yes", "yes", "9093", "leader", "yes", "no", "1", "0", "none", "1.5/12.0", "/data/2"],
        ["3", "103", "not running", "no", "-", "9094", "-", "-", "-", "-", "-", "-", "-", "/data/3"],
    ]
    assert "controller: node 2" in lines
    assert lines[-1] == "bootstrap: 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"


def test_controller_line_when_nodes_disagree_or_none_answers() -> None:
    assert tables.controller_line([node(1, None, answers=False)]) == "controller: unknown (no node answers)"
    assert tables.controller_line([node(1, report(1, -1, "candidate"))]).startswith("controller: none")
    assert (tables.controller_line([node(1, report(1, 3)), node(2, report(2, 2, "leader"))])
            == "controller: the nodes disagree (node 1 says 3, node 2 says 2)")


def test_node_status_of_a_port_nobody_listens_on_is_none() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    started = time.monotonic()
    assert probe.node_status(f"127.0.0.1:{port}", timeout_ms=500) is None
    assert not probe.node_answers(f"127.0.0.1:{port}", timeout_ms=500)
    assert time.monotonic() - started < 5


class FakeAdmin:
    """Answers elect_leaders with a scripted count, or raises a scripted error."""

    outcome: int | Exception = 0
    bootstrap = ""

    def __init__(self, bootstrap: str, **settings) -> None:
        FakeAdmin.bootstrap = bootstrap

    def __enter__(self) -> "FakeAdmin":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def elect_leaders(self) -> int:
        if isinstance(FakeAdmin.outcome, Exception):
            raise FakeAdmin.outcome
        return FakeAdmin.outcome


def test_rebalance_leaders_prints_how_many_partitions_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rill.client, "Admin", FakeAdmin, raising=False)
    FakeAdmin.outcome = 4
    result = invoke("cluster", "rebalance-leaders", "--bootstrap", "127.0.0.1:9093")
    assert result.exit_code == 0, result.output
    assert result.stdout == "moved leadership of 4 partition(s) to their preferred replica\n"
    assert FakeAdmin.bootstrap == "127.0.0.1:9093"
    FakeAdmin.outcome = NotControllerError("no controller")
    assert_one_line_error(invoke("cluster", "rebalance-leaders"), 1, "NotControllerError: no controller")


def make_dry_run(*args: str) -> str:
    """What ``make -n`` would run, from the repo root."""
    result = subprocess.run(["make", "-n", "-s", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_targets_default_to_three_nodes_and_name_one_node() -> None:
    assert "rill cluster up --nodes 3 --base-port 9092 --data-dir ./data" in make_dry_run("cluster")
    two_nodes = make_dry_run("cluster", "NODES=2", "BASE_PORT=20000")
    assert "--bootstrap 127.0.0.1:20000,127.0.0.1:20001" in two_nodes
    assert "rill cluster kill 2 --signal KILL --data-dir ./data" in make_dry_run("kill-node", "N=2")
    assert "rill cluster start 2 --data-dir ./data" in make_dry_run("start-node", "N=2")
