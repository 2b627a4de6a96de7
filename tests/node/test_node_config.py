"""The node's TOML config: parsed into typed settings, every setting settable, unknown keys and wrong types
refused with a message naming the key, topic_defaults checked at start as the controller checks topic configs,
and the effective config logged when the broker starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from brokers import BrokerProcess
from click.testing import CliRunner
from rill.client.errors import InvalidConfigError
from rill.cluster.cli import main
from rill.node.config import NodeConfig, load_node_config

NODE = '[[nodes]]\nid = 1\nport = 19092\n'
BUILT_FROM_OTHER_KEYS = {"node_id", "data_dir", "nodes", "topic_defaults"}  # tested on their own below
OTHER_CHOICES = {"log_level": "DEBUG", "log_format": "json"}  # settings with a fixed set of values


def other_than_default(item: dataclasses.Field) -> object:
    """A valid value of a NodeConfig setting other than its default, by the setting's type."""
    if item.name in OTHER_CHOICES:
        return OTHER_CHOICES[item.name]
    if isinstance(item.default, bool):
        return not item.default
    if isinstance(item.default, int):
        return item.default + 1
    if isinstance(item.default, float):
        return item.default + 0.5  # testing_drop_produce_responses: a fraction
    return "v" * 40  # str settings: cluster_id, cluster_secret (at least 32 characters)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (int, float)) else f'"{value}"'


def load(tmp_path: Path, text: str) -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_node_config(path, {"node_id": 1})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(InvalidConfigError) as refused:
        load(tmp_path, text)
    return str(refused.value)


def test_every_setting_is_settable(tmp_path):
    settings = {item.name: other_than_default(item) for item in dataclasses.fields(NodeConfig)
                if item.name not in BUILT_FROM_OTHER_KEYS}
    assert {"max_request_bytes", "flush_check_interval_ms", "auto_leader_rebalance"} <= set(settings)
    config = load(tmp_path, "".join(f"{key} = {toml_value(value)}\n" for key, value in settings.items()) + NODE)
    assert {key: getattr(config, key) for key in settings} == settings


def test_node_list_data_dir_and_topic_defaults(tmp_path):
    config = load(tmp_path, 'data_dir = "/srv/rill"\n[[nodes]]\nid = 1\nhost = "10.0.0.1"\nport = 9000\n'
                            'raft_port = 9001\n[topic_defaults]\n"retention.ms" = 60000\n'
                            '"unclean.leader.election.enable" = true\n')
    assert config.data_dir == Path("/srv/rill")
    assert (config.me.host, config.me.port, config.me.raft_port, config.me.http_port) == ("10.0.0.1", 9000, 9001, 9200)
    assert config.topic_defaults == {"retention.ms": "60000", "unclean.leader.election.enable": "true"}


def test_unknown_key_is_refused_with_a_suggestion(tmp_path):
    message = refusal(tmp_path, "sesion_timeout_ms = 5000\n" + NODE)
    assert "unknown key 'sesion_timeout_ms' in node config; did you mean 'session_timeout_ms'?" in message


def test_unknown_key_of_a_node_entry_is_refused(tmp_path):
    message = refusal(tmp_path, "[[nodes]]\nid = 1\nport = 9000\nraft_prot = 9100\n")
    assert "unknown key 'raft_prot' in nodes[0]" in message and "did you mean 'raft_port'?" in message


@pytest.mark.parametrize("line, key, problem", [
    ('auto_leader_rebalance = "false"', "auto_leader_rebalance", "expected bool, got str"),
    ("auto_leader_rebalance = 0", "auto_leader_rebalance", "expected bool, got int"),
    ('session_timeout_ms = "5000"', "session_timeout_ms", "expected int, got str"),
    ("max_request_bytes = 1.5e6", "max_request_bytes", "expected int, got float"),
    ("flush_check_interval_ms = true", "flush_check_interval_ms", "expected int, got bool"),
    ("cluster_id = 7", "cluster_id", "expected str, got int"),
])
def test_wrong_type_is_refused_naming_the_key(tmp_path, line, key, problem):
    message = refusal(tmp_path, line + "\n" + NODE)
    assert f"'{key}'" in message and problem in message, message


@pytest.mark.parametrize("line, phrase", [
    ("flush_check_interval_ms = 0", "flush_check_interval_ms must be from 1"),
    ("retention_check_interval_ms = -5", "retention_check_interval_ms must be from 1"),
    ("max_request_bytes = 10", "max_request_bytes must be from 1024"),
    ('cluster_id = ""', "cluster_id must not be empty"),
    ("offsets_topic_segment_bytes = 4294967296", "offsets_topic_segment_bytes: bad value '4294967296' for "
                                                 "segment.bytes"),
])
def test_value_out_of_range_is_refused(tmp_path, line, phrase):
    assert phrase in refusal(tmp_path, line + "\n" + NODE)


@pytest.mark.parametrize("defaults, phrase", [
    ('"segment.byte" = 1048576', "unknown topic default 'segment.byte'; did you mean 'segment.bytes'?"),
    ('"segment.bytes" = 4294967296', "bad value '4294967296' for segment.bytes"),
    ('"segment.index.bytes" = 8', "bad value '8' for segment.index.bytes"),
    ('"cleanup.policy" = "shred"', "bad value 'shred' for cleanup.policy"),
])
def test_bad_topic_defaults_are_refused_at_start(tmp_path, defaults, phrase):
    message = refusal(tmp_path, NODE + "[topic_defaults]\n" + defaults + "\n")
    assert message.startswith("topic_defaults: ") and phrase in message, message


def test_a_node_list_and_a_local_layout_are_not_mixed(tmp_path):
    assert "node_count and base_port" in refusal(tmp_path, "base_port = 9000\n" + NODE)


def test_the_secret_is_hidden_from_the_logged_config(tmp_path):
    config = load(tmp_path, f'cluster_secret = "{"q" * 40}"\n' + NODE)
    assert "q" * 40 not in config.describe() and "cluster_secret='<hidden>'" in config.describe()


def test_rill_node_refuses_a_bad_config_with_one_line(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(NODE + '[topic_defaults]\n"retention.msec" = 1000\n')
    result = CliRunner().invoke(main, ["node", "--id", "1", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "invalid node config: topic_defaults: unknown topic default 'retention.msec'" in result.stderr


def test_the_broker_logs_its_effective_config(tmp_path):
    broker = BrokerProcess(tmp_path / "broker", settings={"flush_check_interval_ms": 250,
                                                         "max_request_bytes": 2_000_000})
    try:
        broker.start()
        logged = next(line for line in broker.output().splitlines() if "node config: " in line)
    finally:
        broker.stop()
    assert "flush_check_interval_ms=250" in logged and "max_request_bytes=2000000" in logged
    assert "retention_check_interval_ms=200" in logged and "session_timeout_ms=" in logged
