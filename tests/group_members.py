"""Consumer group members in child processes (tests/groups/consumer_process.py), and workloads for them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from brokers import wait_until
from rill.client import Producer

CONSUMER_SCRIPT = Path(__file__).parent / "groups" / "consumer_process.py"


class ConsumerProcess:
    """One group member in a child process (consumer_process.py); stopped by pid."""

    def __init__(self, bootstrap: str, group: str, topic: str, out: Path):
        self.out = out
        self._log = open(out.with_suffix(".log"), "w")
        self.process = subprocess.Popen(
            [sys.executable, str(CONSUMER_SCRIPT), "--bootstrap", bootstrap, "--group", group, "--topic", topic,
             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=self._log)

    def lines(self) -> list[list[str]]:
        if not self.out.exists():
            return []
        return [line.split(" ") for line in self.out.read_text().splitlines() if line]

    def records(self) -> list[tuple[int, int]]:
        """(partition, offset) of every record it processed, in order."""
        return [(int(p[1]), int(p[2])) for p in self.lines() if p[0] == "R" and len(p) == 4]

    def values(self) -> set[int]:
        """The numbers (produce's values) of the records it processed."""
        return {int(p[3]) for p in self.lines() if p[0] == "R" and len(p) == 4}

    def owned(self) -> set[int]:
        """The partitions it holds now, from its assignment notes."""
        held: set[int] = set()
        for parts in self.lines():
            numbers = {int(n) for n in parts[1:] if n}
            if parts[0] == "A":
                held |= numbers
            elif parts[0] == "V":
                held -= numbers
        return held

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        """SIGTERM (close: commit and leave), SIGKILL if it does not exit in 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    """Keyed records with values ``first .. first+count-1``, all acknowledged."""
    with Producer(bootstrap, linger_ms=2) as producer:
        for number in range(first, first + count):
            producer.send(topic, str(number).encode(), key=str(number).encode())
        producer.flush()


def wait_processed(consumers: list[ConsumerProcess], count: int, what: str, timeout_s: float = 60.0) -> None:
    """Until the consumers together processed ``count`` distinct records."""
    wait_until(lambda: len({r for c in consumers for r in c.records()}) >= count, timeout_s, what)
