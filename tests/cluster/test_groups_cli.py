"""``rill groups`` against the shared broker: list, describe with lag, reset-offsets, delete, and their errors.

Commands run in-process through click's CliRunner; the group's one member
is a real consumer in the test (auto-commit off, so the test chooses every
committed offset).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from brokers import poll_until_assigned, wait_until
from click.testing import CliRunner, Result
from rill.client import Admin, Consumer, Producer, TopicPartition
from rill.cluster.cli import main

PARTITIONS = 3
RECORDS_PER_PARTITION = 10


@pytest.fixture
def topic(admin: Admin, shared_broker, topic_name: str) -> str:
    admin.create_topic(topic_name, partitions=PARTITIONS)
    with Producer(shared_broker.bootstrap) as producer:
        for index in range(PARTITIONS * RECORDS_PER_PARTITION):
            producer.send(topic_name, b"%d" % index, partition=index % PARTITIONS)
    return topic_name


@pytest.fixture
def group(topic: str) -> str:
    return f"cli-group-{topic}"


@pytest.fixture
def member(admin: Admin, shared_broker, group: str, topic: str) -> Iterator[Consumer]:
    """The group's one member, owning every partition, with offsets 4 and 10 committed on partitions 0 and 1."""
    consumer = Consumer(shared_broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                        enable_auto_commit=False, heartbeat_interval_ms=100, client_id="cli-test-member")
    try:
        poll_until_assigned(consumer, PARTITIONS)
        consumer.commit(offsets={TopicPartition(topic, 0): 4, TopicPartition(topic, 1): RECORDS_PER_PARTITION})

        def stable() -> bool:
            consumer.poll(0.05)  # heartbeats: the member reports what it owns
            return admin.describe_group(group).state == "Stable"

        wait_until(stable, 30, f"group {group} to be Stable")
        yield consumer
    finally:
        consumer.close()


@pytest.fixture
def rill(shared_broker):
    """Runs ``rill <args> --bootstrap <the shared broker>``."""
    def run(*args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--bootstrap", shared_broker.bootstrap])

    return run


def rows(output: str, title: str) -> list[list[str]]:
    """The cells of each row of the table printed under the line ``title`` (up to its bottom border)."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.rstrip() == title)
    found = []
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            found.append([cell.strip() for cell in line.split("│")[1:-1]])
    return found


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_shows_the_group_with_state_and_members(rill, member, group):
    result = rill("groups", "list")
    assert result.exit_code == 0, result.output
    title = next(line.rstrip() for line in result.stdout.splitlines() if line.rstrip().endswith("consumer group(s)"))
    listed = rows(result.stdout, title)
    assert [group, "Stable", "1"] in listed
    assert [row[0] for row in listed] == sorted(row[0] for row in listed)


def test_describe_shows_members_and_lag(rill, member, group, topic):
    result = rill("groups", "describe", group)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"group {group}: state Stable, epoch ")
    assert first.endswith(f"assignor sticky, 1 member(s), total lag {RECORDS_PER_PARTITION - 4}")
    [[member_id, client_id, _, subscription, assignment]] = rows(result.stdout, "members: 1")
    assert (client_id, subscription, assignment) == ("cli-test-member", topic, f"{topic}:0,1,2")
    assert member_id
    assert [row[:5] for row in rows(result.stdout, "offsets: 3 partition(s)")] == [
        [topic, "0", "4", str(RECORDS_PER_PARTITION), str(RECORDS_PER_PARTITION - 4)],
        [topic, "1", str(RECORDS_PER_PARTITION), str(RECORDS_PER_PARTITION), "0"],
        [topic, "2", "-", str(RECORDS_PER_PARTITION), "-"],
    ]
    assert [row[6] for row in rows(result.stdout, "offsets: 3 partition(s)")] == [member_id] * 3
    assert result.stdout.splitlines()[1].startswith("lag state: ")


def test_reset_offsets_is_refused_while_the_group_has_members(rill, admin, member, group, topic):
    result = rill("groups", "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert_one_line_error(result, 1, "GroupNotEmptyError", group, "stop its consumers")
    assert [p.committed_offset for p in admin.describe_group(group).partitions] == [4, RECORDS_PER_PARTITION, None]


def test_reset_offsets_prints_the_new_offsets(rill, admin, member, group, topic):
    member.close()
    result = rill("groups", "reset-offsets", group, "--topic", topic, "--to-offset", "7", "--partition", "0",
                  "--partition", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"group {group}: committed new offsets for 2 partition(s) of {topic}"
    assert rows(result.stdout, "new offsets") == [[topic, "0", "7"], [topic, "2", "7"]]
    result = rill("groups", "reset-offsets", group, "--topic", topic, "--to-datetime", "2000-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert rows(result.stdout, "new offsets") == [[topic, str(p), "0"] for p in range(PARTITIONS)]
    described = rill("groups", "describe", group)
    assert described.stdout.splitlines()[0].endswith(f"0 member(s), total lag {PARTITIONS * RECORDS_PER_PARTITION}")


@pytest.mark.parametrize("targets", [[], ["--to-earliest", "--to-latest"], ["--to-offset", "1", "--to-latest"]])
def test_reset_offsets_needs_exactly_one_target(rill, group, topic, targets):
    result = rill("groups", "reset-offsets", group, "--topic", topic, *targets)
    assert_one_line_error(result, 2, "exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime")


def test_reset_offsets_of_an_unknown_topic_or_a_bad_datetime(rill, group, topic):
    assert_one_line_error(rill("groups", "reset-offsets", group, "--topic", f"{topic}-missing", "--to-latest"), 1,
                          "UnknownTopicError", f"{topic}-missing")
    assert_one_line_error(rill("groups", "reset-offsets", group, "--topic", topic, "--to-datetime", "noon"), 1,
                          "InvalidConfigError", "noon")


def test_delete_refused_with_members_then_deleted(rill, member, group):
    assert_one_line_error(rill("groups", "delete", group), 1, "GroupNotEmptyError", group)
    member.close()
    result = rill("groups", "delete", group)
    assert (result.exit_code, result.stdout) == (0, f"deleted group {group}\n")
    assert_one_line_error(rill("groups", "describe", group), 1, "GroupIdNotFoundError", group)
    assert group not in rill("groups", "list").stdout


def test_unknown_group_is_a_one_line_error(rill):
    assert_one_line_error(rill("groups", "describe", "no-such-cli-group"), 1, "GroupIdNotFoundError",
                          "no-such-cli-group")
    assert_one_line_error(rill("groups", "delete", "no-such-cli-group"), 1, "GroupIdNotFoundError")


def test_consume_as_a_group_member_resumes_after_what_it_printed(rill, admin, group, topic):
    first = rill("consume", topic, "--group", group, "--from-beginning", "--max-messages", "12")
    assert first.exit_code == 0, first.output
    second = rill("consume", topic, "--group", group, "--from-beginning",  # only where nothing was committed
                  "--max-messages", str(PARTITIONS * RECORDS_PER_PARTITION - 12), "--timeout-ms", "10000")
    assert second.exit_code == 0, second.output
    printed = first.stdout.splitlines() + second.stdout.splitlines()
    assert sorted(printed, key=int) == [str(index) for index in range(PARTITIONS * RECORDS_PER_PARTITION)]
    assert admin.describe_group(group).total_lag == 0
