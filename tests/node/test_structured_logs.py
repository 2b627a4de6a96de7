"""The broker's structured logs: text or JSON lines with time, node id, level, logger and message, events with
their fields (leader and ISR changes, fencing, retention deletions, slow requests), and the settings that choose
them (node config log_level / log_format / slow_request_ms, overridden by `rill node --log-level/--log-format`)."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from pathlib import Path

import pytest
from brokers import BrokerProcess, ClusterProcesses, wait_until
from click.testing import CliRunner
from rill.client import Admin, Producer, protocol
from rill.cluster.cli import main
from rill.node.network.slow_requests import LINES_PER_S_MAX, SlowRequestLog
from rill.node.structured_logging import JsonFormatter, TextFormatter, log_event

FIXED_KEYS = ("time", "level", "node_id", "logger", "message")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
HARNESS_LINE = "==== test:"  # written into the output file by tests/brokers.py, not by the broker


def json_lines(broker: BrokerProcess) -> list[dict]:
    """Every line the broker wrote, parsed; fails the test on a line that is not a JSON log record."""
    records = []
    for line in broker.output().splitlines():
        if line.startswith(HARNESS_LINE):
            continue
        record = json.loads(line)
        assert all(key in record for key in FIXED_KEYS), line
        assert ISO_TIME.fullmatch(record["time"]) and record["node_id"] == broker.node_id, line
        records.append(record)
    return records


def events(broker: BrokerProcess, event: str, **fields: object) -> list[dict]:
    """The broker's JSON records of ``event`` whose fields include ``fields``."""
    return [record for record in json_lines(broker)
            if record.get("event") == event and all(record.get(key) == value for key, value in fields.items())]


def test_json_lines_with_leader_retention_and_slow_request_events(tmp_path: Path):
    broker = BrokerProcess(tmp_path / "broker", settings={"log_format": "json", "slow_request_ms": 1})
    try:
        broker.start()
        with Admin(broker.bootstrap) as admin:
            admin.create_topic("orders", partitions=2)
            admin.create_topic("old", config={"segment.bytes": 1_000, "retention.ms": 60_000})
            admin.create_topic("big", config={"segment.bytes": 2_000, "retention.bytes": 4_000})
            # Creating topics waits for Raft: well over 1 ms. Another one per poll, should one be quicker.
            names = iter(f"probe-{number}" for number in range(100))
            wait_until(lambda: events(broker, "slow_request", api="create_topic") or admin.create_topic(next(names)), 30,
                       "a slow_request event")
        with Producer(broker.bootstrap, batch_size=200, linger_ms=0, compression="none") as producer:
            for number in range(50):
                producer.send("old", b"." * 100, timestamp_ms=1_000 + number)  # long expired
                producer.send("big", b"." * 100)
            producer.send("old", b"fresh")
        by_time = wait_until(lambda: events(broker, "retention_delete", topic="old"), 30, "a time retention event")
        by_size = wait_until(lambda: events(broker, "retention_delete", topic="big"), 30, "a size retention event")
        records = json_lines(broker)
    finally:
        broker.stop()
    leader = [record for record in records if record.get("event") == "leader_change" and record["topic"] == "orders"]
    assert sorted(record["partition"] for record in leader) == [0, 1]
    assert all((r["role"], r["leader"], r["leader_epoch"], r["isr"]) == ("leader", 1, 0, [1]) for r in leader)
    assert leader[0]["logger"] == "rill.node.replication.replica_manager" and leader[0]["level"] == "INFO"
    slow = next(record for record in records
                if record.get("event") == "slow_request" and record["api"] == "create_topic")
    assert slow["level"] == "WARNING" and slow["api"] == "create_topic" and slow["duration_ms"] > 1
    assert slow["client_id"] and slow["request_bytes"] > 0
    assert by_time[0]["reason"] == "time" and by_time[0]["segments"] >= 1 and by_time[0]["bytes"] > 0
    assert by_size[0]["reason"] == "size" and by_size[0]["partition"] == 0 and by_size[0]["log_start_offset"] > 0


def test_text_lines_carry_the_node_id_and_key_value_fields(tmp_path: Path):
    broker = BrokerProcess(tmp_path / "broker", node_id=1)
    try:
        broker.start()
        with Admin(broker.bootstrap) as admin:
            admin.create_topic("orders")
        line = wait_until(lambda: next((line for line in broker.output().splitlines()
                                        if "event=leader_change" in line), None), 10, "a leader_change line")
    finally:
        broker.stop()
    time_text, node, level, rest = line.split(" ", 3)
    assert ISO_TIME.fullmatch(time_text) and node == "node=1" and level == "INFO", line
    assert rest.startswith("rill.node.replication.replica_manager: orders-0: became leader at leader epoch 0 "), line
    assert rest.endswith("topic=orders partition=0 role=leader leader=1 leader_epoch=0 isr=[1] replicas=[1]"), line


def test_a_killed_broker_is_fenced_and_leaves_every_isr(tmp_path: Path):
    cluster = ClusterProcesses(tmp_path, 3, settings={"log_format": "json"})
    try:
        cluster.start_all()
        controller = cluster.wait_for_controller()
        cluster.create_topic("orders", partitions=3)
        victim = next(node_id for node_id in cluster.node_ids if node_id != controller)
        led = [index for index in range(3) if cluster.leader_of("orders", index) == victim]
        cluster.kill(victim, signal.SIGKILL)
        fenced = wait_until(lambda: events(cluster[controller], "broker_fenced", broker_id=victim), 30,
                            f"the controller to fence broker {victim}")
        shrunk = wait_until(lambda: len(events(cluster[controller], "isr_change", broker_id=victim)) >= 3
                            and events(cluster[controller], "isr_change", broker_id=victim), 30,
                            "an ISR change of each partition")
        for index in led:
            wait_until(lambda: took_over(cluster, index), 30, f"a new leader of orders-{index} to log it")
    finally:
        cluster.stop_all()
    assert fenced[0]["level"] == "WARNING" and "process is gone" in fenced[0]["reason"]
    assert fenced[0]["message"].startswith(f"fencing broker {victim}: ")
    assert sorted(record["partition"] for record in shrunk) == [0, 1, 2]
    for record in shrunk:
        assert victim in record["old_isr"] and victim not in record["new_isr"] and len(record["new_isr"]) == 2
        assert record["source"] == "broker_fenced" and record["topic"] == "orders"


def took_over(cluster: ClusterProcesses, index: int) -> bool:
    """Whether a running broker logged becoming leader of orders-``index`` after the first epoch."""
    return any(record["leader"] == node_id and record["leader_epoch"] > 0
               for node_id in cluster.alive_ids()
               for record in events(cluster[node_id], "leader_change", topic="orders", partition=index, role="leader"))


def test_rill_node_refuses_an_unknown_log_format(tmp_path: Path):
    result = CliRunner().invoke(main, ["node", "--id", "1", "--log-format", "xml"])
    assert result.exit_code == 2
    assert "Invalid value for '--log-format': 'xml' is not one of 'text', 'json'" in result.output


def test_bad_log_settings_in_the_config_are_refused(tmp_path: Path):
    config = tmp_path / "node.toml"
    config.write_text('log_format = "xml"\nlog_level = "LOUD"\nslow_request_ms = 0\n[[nodes]]\nid = 1\nport = 19092\n')
    result = CliRunner().invoke(main, ["node", "--id", "1", "--config", str(config)])
    assert result.exit_code == 2
    assert "invalid node config:" in result.stderr
    assert "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'" in result.stderr
    assert "log_format must be one of text, json, got 'xml'" in result.stderr
    assert "slow_request_ms must be from 1" in result.stderr


def test_flags_and_the_environment_override_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "node.toml"
    config.write_text('log_format = "json"\nlog_level = "WARNING"\n[[nodes]]\nid = 1\nport = 19092\n')
    started = []
    monkeypatch.setattr("rill.node.main.run_node", started.append)  # the command runs this broker entry point
    monkeypatch.delenv("RILL_LOG_LEVEL", raising=False)
    run = ["node", "--id", "1", "--config", str(config)]
    assert CliRunner().invoke(main, run).exit_code == 0
    assert CliRunner().invoke(main, [*run, "--log-format", "text", "--log-level", "debug"]).exit_code == 0
    assert CliRunner().invoke(main, run, env={"RILL_LOG_LEVEL": "ERROR"}).exit_code == 0
    assert [(config.log_format, config.log_level) for config in started] == [
        ("json", "WARNING"), ("text", "DEBUG"), ("json", "ERROR")]


def make_record(message: str, fields: dict | None = None, exc_info=None) -> logging.LogRecord:
    record = logging.LogRecord("rill.node.test", logging.ERROR, __file__, 1, message, (), exc_info)
    record.created = 1_795_849_262.345  # 2026-11-28T07:01:02.345Z
    if fields is not None:
        record.fields = fields
    return record


def test_formats_of_fields_and_tracebacks():
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    fields = {"event": "storage_error", "error": 'disk "full"', "isr": (1, 2), "path": Path("/d"), "ok": True}
    text = TextFormatter(3).format(make_record("x failed", fields, failure))
    first, *traceback = text.splitlines()
    assert first == ('2026-11-28T07:01:02.345Z node=3 ERROR rill.node.test: x failed event=storage_error '
                     'error="disk \\"full\\"" isr=[1,2] path=/d ok=true')
    assert traceback[0] == "Traceback (most recent call last):" and traceback[-1] == "ValueError: boom"
    document = json.loads(JsonFormatter(3).format(make_record("x failed", {**fields, "level": "mine"}, failure)))
    assert document["time"] == "2026-11-28T07:01:02.345Z" and document["level"] == "ERROR", "fixed keys stay"
    assert (document["isr"], document["path"], document["error"]) == ([1, 2], "/d", 'disk "full"')
    assert document["exception"].endswith("ValueError: boom") and "\n" not in JsonFormatter(3).format(
        make_record("two\nlines"))


def test_log_event_adds_the_event_name_to_the_fields(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("rill.node.test")
    with caplog.at_level(logging.INFO, logger="rill.node.test"):
        log_event(logger, logging.INFO, "leader_change", "orders-0: became leader", topic="orders", partition=0)
        log_event(logger, logging.DEBUG, "hidden", "below the level: not even built")
    assert [record.fields for record in caplog.records] == [
        {"event": "leader_change", "topic": "orders", "partition": 0}]


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_slow_requests_are_bounded_and_a_fetch_wait_does_not_count(caplog: pytest.LogCaptureFixture):
    clock = FakeClock()
    slow = SlowRequestLog(100, clock_s=clock)
    fetch = protocol.FetchRequest(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=1, topics=[])
    with caplog.at_level(logging.WARNING, logger="rill.node.network.slow_requests"):
        slow.finished(protocol.FETCH, fetch, "c", 10, clock.now_s - 0.550)  # waited as asked, +50 ms
        slow.finished(protocol.METADATA, None, "c", 10, clock.now_s - 0.050)
        for _ in range(LINES_PER_S_MAX + 5):
            slow.finished(protocol.METADATA, None, "c", 10, clock.now_s - 0.250)
        clock.now_s += 1.0
        slow.finished(protocol.FETCH, fetch, "c", 10, clock.now_s - 0.700)  # 200 ms beyond its wait
    logged = [record.fields for record in caplog.records]
    assert len(logged) == LINES_PER_S_MAX + 1
    assert logged[0]["api"] == "metadata" and logged[0]["duration_ms"] == 250.0 and logged[0]["not_logged"] == 0
    assert logged[-1]["api"] == "fetch" and logged[-1]["asked_wait_ms"] == 500 and logged[-1]["not_logged"] == 5
