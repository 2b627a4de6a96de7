"""``rill top`` against a real broker: what it gathers, what it draws in 80 columns, and how it quits.

The command runs in a pseudo-terminal 80 columns wide (pexpect), inside bash, which prints the terminal's
settings (``stty -g``) before and after it: they must be the same once it quits, by ``q`` or by Ctrl-C
(both exit 0, as documented), and with stdin not a terminal Ctrl-C alone ends it.
"""

from __future__ import annotations

import re
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pexpect
import pytest
from brokers import BrokerProcess, ClusterProcesses, wait_until
from rich.console import Console
from rill.client import Admin, Consumer, Producer, protocol
from rill.cluster.top_sampler import BrokerRow, ClusterSampler, ClusterView, GroupRow, TopicRow
from rill.cluster.top_tables import broker_state, render

COLUMNS, LINES = 80, 30
SCREEN_TIMEOUT_S = 30
EXIT_TIMEOUT_S = 10
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker of these tests' own: on the shared one, other tests' topics and groups fill the screen."""
    broker = BrokerProcess(tmp_path_factory.mktemp("rill-top")).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def busy_group(own_broker: BrokerProcess) -> Iterator[str]:
    """A 3-partition topic with 300 records, and a group of one member reading it (polling on a thread); both
    named ``top-<8 hex digits>``, short enough to show whole."""
    topic_name = f"top-{uuid.uuid4().hex[:8]}"
    with Admin(own_broker.bootstrap) as admin:
        admin.create_topic(topic_name, partitions=3)
    with Producer(own_broker.bootstrap, linger_ms=1) as producer:
        for number in range(300):
            producer.send(topic_name, b"r", partition=number % 3)
        producer.flush(timeout=30)
    stop = threading.Event()
    joined = threading.Event()

    def member() -> None:
        with Consumer(own_broker.bootstrap, group_id=topic_name, topics=[topic_name],
                      auto_offset_reset="earliest", auto_commit_interval_ms=200) as consumer:
            while not stop.is_set():
                consumer.poll(0.1)
                if len(consumer.assignment()) == 3:
                    joined.set()

    thread = threading.Thread(target=member, daemon=True)
    thread.start()
    try:
        assert joined.wait(30), "the member joined its group"
        yield topic_name
    finally:
        stop.set()
        thread.join(30)


def spawn_top(bootstrap: str, stdin: str = "") -> pexpect.spawn:
    """bash in an 80-column pseudo-terminal: the terminal settings, rill top, its exit status and the settings."""
    top = shlex.join([sys.executable, "-m", "rill.cluster", "top", "--bootstrap", bootstrap, "--interval", "0.3"])
    script = f'echo "before=$(stty -g)"; {top} {stdin}; echo "exit=$? after=$(stty -g)"'
    return pexpect.spawn("bash", ["--norc", "--noprofile", "-c", script], dimensions=(LINES, COLUMNS),
                         encoding="utf-8", codec_errors="replace", timeout=SCREEN_TIMEOUT_S,
                         env={"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def wait_for_frame(child: pexpect.spawn, group: str) -> list[str]:
    """Read frames (rich starts each at the cursor's home) until one shows the group as Stable with 1 member;
    that frame's lines, without escape sequences."""
    deadline = time.monotonic() + SCREEN_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        child.expect("\x1b\\[H")
        last = ESCAPE.sub("", child.before)
        lines = last.splitlines()
        if any(re.match(rf"{re.escape(group)}\s+Stable\s+1\s", line) for line in lines):
            return lines
    raise AssertionError(f"no frame showed group {group} as Stable; the last one:\n{last}")


def check_quit(child: pexpect.spawn, before: str) -> None:
    child.expect(r"exit=(\d+) after=(\S+)", timeout=EXIT_TIMEOUT_S)
    status, after = child.match.group(1), child.match.group(2)
    child.expect(pexpect.EOF)
    assert status == "0"
    assert after == before, "the terminal's settings are restored"


def test_top_shows_brokers_topics_and_groups_in_80_columns_and_quits_on_q(own_broker, busy_group):
    child = spawn_top(own_broker.bootstrap)
    try:
        child.expect(r"before=(\S+)")
        before = child.match.group(1)
        lines = wait_for_frame(child, busy_group)
        assert all(len(line) <= COLUMNS for line in lines)
        port = own_broker.port
        assert any(re.match(rf"\s*1\s+127\.0\.0\.1:{port}\s+up\s+leader\s+yes\s+\d+\s+0\s*$", line)
                   for line in lines), lines
        assert any(re.match(rf"{busy_group}\s+3\s+300\s", line) for line in lines), lines
        child.send("q")
        check_quit(child, before)
    finally:
        child.close(force=True)


@pytest.mark.parametrize("stdin", ["", "< /dev/null"], ids=["stdin-terminal", "stdin-not-terminal"])
def test_top_quits_on_ctrl_c_with_status_0(own_broker, busy_group, stdin):
    child = spawn_top(own_broker.bootstrap, stdin)
    try:
        child.expect(r"before=(\S+)")
        before = child.match.group(1)
        wait_for_frame(child, busy_group)
        child.sendintr()
        check_quit(child, before)
    finally:
        child.close(force=True)


def test_top_with_a_bad_bootstrap_is_a_one_line_error():
    child = pexpect.spawn(sys.executable, ["-m", "rill.cluster", "top", "--bootstrap", "no-port"], encoding="utf-8",
                          dimensions=(LINES, COLUMNS), timeout=SCREEN_TIMEOUT_S)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert child.before.strip().splitlines() == [
        "error: InvalidConfigError: bootstrap address 'no-port' is not host:port"]


# ---- what it gathers, and how it fits the screen ------------------------------------------------


def test_sampler_reports_rates_and_lag_from_the_change_between_samples(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    group = f"{topic_name}-g"
    sampler = ClusterSampler(shared_broker.bootstrap, 5_000)
    try:
        first = sampler.sample()
        with Producer(shared_broker.bootstrap, linger_ms=1) as producer:
            for number in range(100):
                producer.send(topic_name, b"r", partition=number % 2)
            producer.flush(timeout=30)
        admin.reset_offsets(group, topic_name, to_offset=20)  # commits from outside: the group has no members
        second = sampler.sample()
        admin.reset_offsets(group, topic_name, to_offset=30)
        third = sampler.sample()
    finally:
        sampler.close()
    assert not first.problems and not second.problems and not third.problems
    assert [row for row in first.topics if row.name == topic_name] == [TopicRow(topic_name, 2, 0, None, None)]
    topic = next(row for row in second.topics if row.name == topic_name)
    assert topic.log_end == 100 and topic.in_rate > 0 and topic.out_rate == 0, "no group committed before"
    topic = next(row for row in third.topics if row.name == topic_name)
    assert topic.in_rate == 0 and topic.out_rate > 0, "the group committed 2 x 10 more records"
    assert [(row.state, row.members, row.lag) for row in third.groups if row.group_id == group] == [("Empty", 0, 40)]
    assert [broker.node_id for broker in third.brokers if broker.controller and broker.report] == [1]
    assert all(row.name not in protocol.INTERNAL_TOPICS for row in third.topics)


def test_sampler_shows_a_killed_broker_as_down_and_keeps_the_others(tmp_path):
    cluster = ClusterProcesses(tmp_path / "cluster", 3).start_all()
    try:
        sampler = ClusterSampler(cluster.bootstrap, 2_000)
        try:
            view = wait_until(lambda: all_up(sampler.sample()), 30, "every broker up and a controller")
            victim = next(row.node_id for row in view.brokers if not row.controller)
            cluster.kill(victim)
            view = wait_until(lambda: victim_down(sampler.sample(), victim), 30, f"broker {victim} shown down")
        finally:
            sampler.close()
    finally:
        cluster.stop_all()
    console = Console(width=COLUMNS, height=LINES, record=True, force_terminal=False)
    console.print(render(view, cluster.bootstrap, 1.0, LINES))
    lines = console.export_text().splitlines()
    assert any(re.match(rf"\s*{victim}\s+127\.0\.0\.1:{cluster[victim].port}\s+down\s+-\s", line)
               for line in lines), lines


def all_up(view: ClusterView) -> ClusterView | None:
    states = [broker_state(row) for row in view.brokers]
    return view if states == ["up"] * 3 and sum(row.controller for row in view.brokers) == 1 else None


def victim_down(view: ClusterView, victim: int) -> ClusterView | None:
    states = {row.node_id: broker_state(row) for row in view.brokers}
    return view if states[victim] == "down" and list(states.values()).count("up") == 2 else None


def test_a_crowded_screen_keeps_every_row_on_one_line_and_says_what_it_left_out():
    report = protocol.NodeStatusResponse(7, "candidate", 1, 1, False, 12_000, 4_000, 12)
    brokers = [BrokerRow(node_id, f"broker-{node_id}.a-long-domain-name.example.com:19092", True, node_id == 7,
                         report if node_id != 9 else None) for node_id in (7, 8, 9)]
    topics = [TopicRow(f"orders.created.v1.a-very-long-topic-name-{n}", 256, 12_345_678_901, n * 1000.0, 0.5)
              for n in range(40)]
    groups = [GroupRow(f"payments-service-a-very-long-group-name-{n}", "Reconciling", 120, n * 10**6, "CATCHING_UP")
              for n in range(40)]
    view = ClusterView(time.time(), brokers, topics, groups, ["groups: " + "a long error message " * 10])
    console = Console(width=COLUMNS, height=LINES, record=True, force_terminal=False)
    console.print(render(view, "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094", 1.0, LINES))
    lines = console.export_text().splitlines()
    assert len(lines) <= LINES and all(len(line) <= COLUMNS for line in lines)
    assert sum(bool(re.match(r"\s*[789]\s+broker-\S+\s+(up|down)\s+(candidate|-)\s", line)) for line in lines) == 3
    titles = [line.strip() for line in lines if line.startswith(("brokers", "topics", "groups ("))]
    assert titles == ["brokers (3)", "topics (8 of 40, busiest)", "groups (7 of 40, most lag)"]
    assert any(re.search(r"\s256\s+12\.3G\s+39\.0k\s+0\.5$", line) for line in lines), "the busiest topic is kept"
    assert any(re.search(r"Reconciling\s+120\s+39\.0M\s+CATCHING_UP$", line) for line in lines)
