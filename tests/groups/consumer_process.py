"""A group member in its own process, for tests that kill consumers: it writes what it processes to a file.

Each polled record becomes a line ``R <partition> <offset> <value>`` in the
output file, flushed before the commit that follows (commits follow
processing); each assignment change becomes ``A <partitions>`` or
``V <partitions>`` (revoked). SIGTERM closes the consumer (commit, leave);
SIGKILL leaves only what was flushed. Exits by itself after ``--max-seconds``.
"""

from __future__ import annotations

import signal
import sys
import time

import click
from rill.client import Consumer


@click.command()
@click.option("--bootstrap", required=True)
@click.option("--group", required=True)
@click.option("--topic", required=True)
@click.option("--out", required=True, type=click.Path())
@click.option("--session-timeout-ms", default=2000)
@click.option("--heartbeat-interval-ms", default=200)
@click.option("--max-seconds", default=120.0)
def main(bootstrap: str, group: str, topic: str, out: str, session_timeout_ms: int, heartbeat_interval_ms: int,
         max_seconds: float) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    with open(out, "a", buffering=1) as sink:
        def changed(kind: str):
            def note(consumer: Consumer, partitions) -> None:
                sink.write(f"{kind} {' '.join(str(tp.partition) for tp in partitions)}\n")
                sink.flush()
            return note

        consumer = Consumer(bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms,
                            max_poll_records=200, on_assign=changed("A"), on_revoke=changed("V"))
        deadline = time.monotonic() + max_seconds
        try:
            while not stopping and time.monotonic() < deadline:
                records = consumer.poll(0.1)
                if records:
                    sink.write("".join(f"R {r.partition} {r.offset} {r.value.decode()}\n" for r in records))
                    sink.flush()
                    consumer.commit()
        finally:
            consumer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
