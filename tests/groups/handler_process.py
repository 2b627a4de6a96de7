"""A group member in its own process that runs run_handler, for tests that crash members mid-run.

The handler fails every record whose value starts with ``poison`` (so it
is dead-lettered after its retries) and writes ``H <partition> <offset>
<value>`` for every other record it handles, flushed before run_handler
can commit it. Assignment changes are noted as ``A <partitions>`` and
``V <partitions>`` (revoked). SIGTERM stops run_handler and closes the
consumer (commit, leave).

With ``--die-flag FILE``: once that file exists, the member kills itself
with SIGKILL right after its next dead-letter copy is acknowledged, that
is after the dead-letter write and before the commit of that record.
Logs (INFO) go to stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click
from rill.client import Consumer, Producer, Retry, run_handler


class DyingProducer(Producer):
    """A producer that ends its process at the first dead-letter write acknowledged once ``flag`` exists."""

    def __init__(self, bootstrap: str, flag: Path):
        super().__init__(bootstrap, linger_ms=0)
        self._flag = flag

    def send(self, topic: str, *args, **kwargs):
        future = super().send(topic, *args, **kwargs)
        if topic.endswith(".dlq") and self._flag.exists():
            future.result(timeout=30)
            os.kill(os.getpid(), signal.SIGKILL)
        return future


@click.command()
@click.option("--bootstrap", required=True)
@click.option("--group", required=True)
@click.option("--topic", required=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--die-flag", type=click.Path(path_type=Path))
@click.option("--max-seconds", default=120.0)
def main(bootstrap: str, group: str, topic: str, out: Path, die_flag: Path | None, max_seconds: float) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    producer = DyingProducer(bootstrap, die_flag) if die_flag else None
    with open(out, "a", buffering=1) as sink:
        def note(kind: str):
            def write(consumer, partitions) -> None:
                sink.write(f"{kind} {' '.join(str(tp.partition) for tp in partitions)}\n")
            return write

        def handle(record) -> None:
            if record.value.startswith(b"poison"):
                raise RuntimeError(f"cannot handle {record.value.decode()}")
            time.sleep(0.002)  # slow enough that both members have work when one dies
            sink.write(f"H {record.partition} {record.offset} {record.value.decode()}\n")
            sink.flush()

        consumer = Consumer(bootstrap, group_id=group, topics=[topic], enable_auto_commit=False,
                            auto_offset_reset="earliest", session_timeout_ms=2000, heartbeat_interval_ms=200,
                            max_poll_records=50, on_assign=note("A"), on_revoke=note("V"))
        deadline = time.monotonic() + max_seconds
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                run_handler(consumer, handle, retry=Retry(attempts=2, backoff_ms=20), producer=producer, stop=stop,
                            timeout=1.0)
        finally:
            consumer.close()
            if producer is not None:
                producer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
