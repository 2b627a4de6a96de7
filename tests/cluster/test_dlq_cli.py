"""``rill dlq list`` and ``rill dlq replay`` against the shared broker, on dead letters run_handler wrote.

Commands run in-process through click's CliRunner.
"""

from __future__ import annotations

import pytest
from brokers import read_partition
from click.testing import CliRunner, Result
from rill.client import Admin, Consumer, Producer, Retry, run_handler
from rill.cluster.cli import main

PARTITIONS = 2


def handle(record) -> None:
    if record.value.startswith(b"bad-value"):
        raise ValueError(f"no price in {record.value.decode()}")
    if record.value.startswith(b"bad-key"):
        raise KeyError("customer")


@pytest.fixture
def topic(admin: Admin, shared_broker, topic_name: str) -> str:
    """A topic whose dead-letter topic holds 3 ValueError and 2 KeyError copies."""
    admin.create_topic(topic_name, partitions=PARTITIONS)
    values = [b"good-0", b"bad-value-1", b"bad-key-2", b"good-3", b"bad-value-4", b"bad-key-5", b"bad-value-6",
              b"good-7"]
    with Producer(shared_broker.bootstrap) as producer:
        for index, value in enumerate(values):
            producer.send(topic_name, value, key=b"k%d" % index, partition=index % PARTITIONS,
                          headers={"origin": b"shop"})
    with Consumer(shared_broker.bootstrap, group_id=f"dlq-cli-{topic_name}", topics=[topic_name],
                  enable_auto_commit=False, auto_offset_reset="earliest") as consumer:
        stats = run_handler(consumer, handle, retry=Retry(attempts=1), max_records=len(values))
    assert stats.dead_lettered == 5
    return topic_name


@pytest.fixture
def rill(shared_broker):
    """Runs ``rill <args> --bootstrap <the shared broker>``."""
    def run(*args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--bootstrap", shared_broker.bootstrap])
    return run


def every_record(bootstrap: str, topic: str) -> list:
    return [record for partition in range(PARTITIONS) for record in read_partition(bootstrap, topic, partition)]


def test_list_counts_dead_letters_by_error_type(rill, topic):
    for name in (topic, topic + ".dlq"):
        result = rill("dlq", "list", name)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == f"dead-letter topic {topic}.dlq: 5 record(s) in {PARTITIONS} partition(s)"
        assert lines[1].startswith("oldest: ") and " UTC  " in lines[1] and f"{topic}-" in lines[1]
        assert lines[2].startswith("newest: ") and "(stored at " in lines[2]
        rows = {line.split("│")[1].strip(): line for line in lines if line.count("│") == 5}
        assert set(rows) == {"ValueError", "KeyError"}
        assert rows["ValueError"].split("│")[2].strip() == "3"
        assert rows["KeyError"].split("│")[2].strip() == "2"
        assert "no price in bad-value-" in rows["ValueError"]


def test_replay_publishes_each_record_once_with_or_without_a_filter(rill, shared_broker, admin, topic):
    result = rill("dlq", "replay", topic, "--filter-error", "KeyError")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"replayed 2 record(s) from {topic}.dlq to their original topics; skipped 3")
    replayed = [record for record in every_record(shared_broker.bootstrap, topic) if "dlq.replayed" in record.headers]
    assert sorted(record.value for record in replayed) == [b"bad-key-2", b"bad-key-5"]
    assert all(dict(record.headers) == {"origin": b"shop", "dlq.replayed": b"1"} for record in replayed)
    assert {record.key for record in replayed} == {b"k2", b"k5"}

    assert rill("dlq", "replay", topic, "--filter-error", "KeyError").output.startswith("replayed 0 record(s)")
    admin.create_topic(topic + "-fixed", partitions=1)
    result = rill("dlq", "replay", topic + ".dlq", "--to", topic + "-fixed")
    assert result.output.startswith(f"replayed 3 record(s) from {topic}.dlq to {topic}-fixed"), result.output
    fixed = read_partition(shared_broker.bootstrap, topic + "-fixed")
    assert sorted(record.value for record in fixed) == [b"bad-value-1", b"bad-value-4", b"bad-value-6"]
    assert rill("dlq", "replay", topic, "--to", topic + "-fixed").output.startswith("replayed 0 record(s)")
    assert rill("dlq", "replay", topic, "--filter-error", "ValueError").output.startswith("replayed 0 record(s)")
    assert len(every_record(shared_broker.bootstrap, topic)) == 8 + 2, "nothing was published twice"


def test_unknown_topic_is_an_error_line(rill, topic_name):
    result = rill("dlq", "list", topic_name)
    assert result.exit_code == 1
    assert result.output.startswith("error: UnknownTopicError")
    result = rill("dlq", "replay", topic_name + ".dlq")
    assert result.exit_code == 1 and result.output.startswith("error: ")
