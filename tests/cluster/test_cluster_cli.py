"""The rill command line without brokers: argument errors, error lines, and the console producer and consumer.

Client classes are replaced by scripted fakes, so these tests check what the
CLI does with answers and failures, not the client itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import pytest
from click.testing import CliRunner

import rill.client
from rill.client.errors import NotEnoughReplicasError, UnknownTopicError
from rill.client.types import Record
from rill.cluster.cli import main


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
    assert_one_line_error(result, 1, "65600")
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
