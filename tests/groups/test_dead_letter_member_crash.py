"""Two run_handler members on a 3-broker cluster; one is killed (SIGKILL) after a dead-letter write was
acknowledged and before its commit. The other takes over: every good record is handled at least once and
every poison record is in the dead-letter topic exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from brokers import read_partition, wait_until
from rill.client import Producer

PARTITIONS = 4
SCRIPT = Path(__file__).parent / "handler_process.py"


class HandlerMember:
    """One handler_process.py child, stopped by pid."""

    def __init__(self, bootstrap: str, group: str, topic: str, out: Path, die_flag: Path | None = None):
        self.out = out
        self.log = out.with_suffix(".log")
        arguments = ["--die-flag", str(die_flag)] if die_flag else []
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), "--bootstrap", bootstrap, "--group", group, "--topic", topic,
                 "--out", str(out), *arguments], stdout=subprocess.DEVNULL, stderr=log)

    def lines(self) -> list[list[str]]:
        return [line.split(" ") for line in self.out.read_text().splitlines() if line] if self.out.exists() else []

    def handled(self) -> list[str]:
        return [parts[3] for parts in self.lines() if parts[0] == "H" and len(parts) == 4]

    def owned(self) -> set[int]:
        held: set[int] = set()
        for parts in self.lines():
            if parts[0] in ("A", "V"):
                numbers = {int(n) for n in parts[1:] if n}
                held = held | numbers if parts[0] == "A" else held - numbers
        return held

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def produce(bootstrap: str, topic: str, values: list[str], by_partition: bool = False) -> None:
    with Producer(bootstrap, linger_ms=2) as producer:
        for index, value in enumerate(values):
            partition = index % PARTITIONS if by_partition else None
            producer.send(topic, value.encode(), key=value.encode(), partition=partition)
        producer.flush()


def dead_letters(bootstrap: str, topic: str) -> list:
    return [copy for partition in range(PARTITIONS) for copy in read_partition(bootstrap, topic + ".dlq", partition)]


def test_killed_member_between_dead_letter_and_commit_leaves_each_poison_record_once(group_cluster, topic_name,
                                                                                     tmp_path):
    bootstrap = group_cluster.bootstrap
    group_cluster.create_topic(topic_name, partitions=PARTITIONS)
    first = [f"poison-{n}" if n % 20 == 3 else f"good-{n}" for n in range(200)]
    produce(bootstrap, topic_name, first)
    flag = tmp_path / "die-now"
    victim = HandlerMember(bootstrap, "payments", topic_name, tmp_path / "victim.out", die_flag=flag)
    survivor = None
    try:
        wait_until(lambda: len(victim.handled()) >= 10, 60, "the first member to handle records")
        survivor = HandlerMember(bootstrap, "payments", topic_name, tmp_path / "survivor.out")
        wait_until(lambda: survivor.owned() and victim.owned() and survivor.owned() | victim.owned()
                   == set(range(PARTITIONS)), 60, "both members to own partitions")
        flag.touch()
        second = [f"poison-{n}" if (n // PARTITIONS) % 5 == 0 else f"good-{n}" for n in range(200, 400)]
        produce(bootstrap, topic_name, second, by_partition=True)  # poison in every partition, the victim's too
        assert victim.process.wait(timeout=60) == -signal.SIGKILL, victim.log.read_text()[-2000:]
        poison = {value for value in first + second if value.startswith("poison")}
        good = {value for value in first + second if value.startswith("good")}
        wait_until(lambda: survivor.owned() == set(range(PARTITIONS)), 30, "the survivor to take every partition")
        wait_until(lambda: good <= set(victim.handled()) | set(survivor.handled()), 60, "every good record handled")
        wait_until(lambda: len(dead_letters(bootstrap, topic_name)) >= len(poison), 60, "every poison dead-lettered")
    finally:
        victim.stop()
        if survivor is not None:
            survivor.stop()
    copies = dead_letters(bootstrap, topic_name)
    sources = Counter((copy.headers["dlq.partition"], copy.headers["dlq.offset"]) for copy in copies)
    assert max(sources.values()) == 1, f"dead-lettered twice: {[s for s, n in sources.items() if n > 1]}"
    assert sorted(copy.value.decode() for copy in copies) == sorted(poison)
    assert "dead-lettered by a previous owner" in survivor.log.read_text(), "the survivor found the victim's copy"
    with group_cluster.admin() as admin:
        dead_letter_topic = admin.describe_topic(topic_name + ".dlq")
    assert [len(info.replicas) for info in dead_letter_topic.partitions] == [3] * PARTITIONS, "made like its source"
