"""The bulk API against the per-record one: send vs send_many, poll vs poll_batch, in one process, interleaved.

``bench_bulk(bootstrap, topic, records, value_bytes)`` returns records/s for
"send", "send_many", "poll" and "poll_batch", each the best of ``ROUNDS``
runs; the runs of a pair alternate (A B B A ...) so that a noisy neighbour
costs both alike. ``topic`` must exist with one partition; every produce run
appends ``records`` values to it, and the consume runs read the first
``records`` back.

- send: a loop of ``Producer.send(topic, value)`` over a list of prepared
  values, then ``flush()``; from the first send to the flush's return.
- send_many: one ``Producer.send_many(topic, values)`` of the same list,
  then ``flush()`` (and the future's ``get()``); timed the same way.
- poll: a fresh consumer assigned the partition, positioned at offset 0,
  polls (``max_poll_records`` 10,000, ``fetch_max_wait_ms`` 100, default
  fetch sizes) until it has ``records`` records; from the first poll to the
  last. Records are Record objects with bytes values. What it reads was
  written by the first send run (a timestamp per record, as services send).
- poll_batch: the same with ``poll_batch``, counting ``len()`` of each
  RecordColumns: the values column is ready for bulk use (``to_arrow``
  wraps its buffer) and cuts its items into bytes only when read, so this
  does not time making a bytes object per value; ``bench_values_list``
  (run with ``python loadtest/bulk_bench.py``) times that too.

Values are ``make bench``'s JSON order events (loadtest/workload.py); producers use acks=1, lz4,
batch_size 65536, linger_ms 5, as ``make bench`` (``batch_size`` picks another, the same for both
calls: per-batch costs, the client's and the broker's, weigh more on send_many, whose records cost
little each).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rill.client import Consumer, Producer, TopicPartition
from workload import make_values

ROUNDS = 3
MAX_POLL_RECORDS = 10_000
POLL_TIMEOUT_S = 5.0
PRODUCER_SETTINGS = {"acks": 1, "compression": "lz4", "batch_size": 65536, "linger_ms": 5}


def bench_bulk(bootstrap: str, topic: str, records: int, value_bytes: int, rounds: int = ROUNDS,
               batch_size: int = PRODUCER_SETTINGS["batch_size"]) -> dict[str, float]:
    """records/s of "send", "send_many", "poll" and "poll_batch" (best of ``rounds`` interleaved runs each)."""
    values = make_values(records, value_bytes)
    best = {"send": 0.0, "send_many": 0.0, "poll": 0.0, "poll_batch": 0.0}
    with Producer(bootstrap, **{**PRODUCER_SETTINGS, "batch_size": batch_size}) as producer:
        producer.send(topic, b"warm-up").result(timeout=30)  # metadata and connection, outside the timings
        for round_number in range(rounds):
            for name in _alternating(("send", "send_many"), round_number):
                seconds = _time_send(producer, topic, values) if name == "send" else \
                    _time_send_many(producer, topic, values)
                best[name] = max(best[name], records / seconds)
    for round_number in range(rounds):
        for name in _alternating(("poll", "poll_batch"), round_number):
            seconds = _time_consume(bootstrap, topic, records, name == "poll_batch")
            best[name] = max(best[name], records / seconds)
    return best


def _alternating(pair: tuple[str, str], round_number: int) -> tuple[str, str]:
    return pair if round_number % 2 == 0 else pair[::-1]


def _time_send(producer: Producer, topic: str, values: list[bytes]) -> float:
    send = producer.send
    start = time.perf_counter()
    for value in values:
        send(topic, value)
    producer.flush()
    return time.perf_counter() - start


def _time_send_many(producer: Producer, topic: str, values: list[bytes]) -> float:
    start = time.perf_counter()
    future = producer.send_many(topic, values)
    producer.flush()
    future.get()
    return time.perf_counter() - start


def _time_consume(bootstrap: str, topic: str, records: int, in_columns: bool,
                  touch: Callable[[object], None] | None = None) -> float:
    """Seconds to read the first ``records`` records of partition 0 with poll (or poll_batch)."""
    partition = TopicPartition(topic, 0)
    with Consumer(bootstrap, max_poll_records=MAX_POLL_RECORDS, fetch_max_wait_ms=100) as consumer:
        consumer.assign([partition])
        consumer.seek(partition, 0)
        poll = consumer.poll_batch if in_columns else consumer.poll
        got = 0
        start = time.perf_counter()
        while got < records:
            returned = poll(POLL_TIMEOUT_S)
            if not in_columns:
                got += len(returned)
                continue
            for columns in returned:
                got += len(columns)
                if touch is not None:
                    touch(columns)
        return time.perf_counter() - start


def bench_values_list(bootstrap: str, topic: str, records: int, rounds: int = ROUNDS) -> dict[str, float]:
    """records/s of poll_batch with every values column made a list of bytes, against poll (interleaved)."""
    best = {"poll": 0.0, "poll_batch+values": 0.0}
    for round_number in range(rounds):
        for name in _alternating(("poll", "poll_batch+values"), round_number):
            touch = None if name == "poll" else (lambda columns: columns.values.to_list())
            seconds = _time_consume(bootstrap, topic, records, name != "poll", touch)
            best[name] = max(best[name], records / seconds)
    return best


def main() -> None:
    """``python loadtest/bulk_bench.py BOOTSTRAP TOPIC [RECORDS] [VALUE_BYTES] [ROUNDS] [BATCH_SIZE]``: prints the
    numbers and ratios (the topic must exist, with one partition)."""
    bootstrap, topic = sys.argv[1], sys.argv[2]
    records = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
    value_bytes = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else ROUNDS
    batch_size = int(sys.argv[6]) if len(sys.argv) > 6 else PRODUCER_SETTINGS["batch_size"]
    result = bench_bulk(bootstrap, topic, records, value_bytes, rounds, batch_size)
    values_run = bench_values_list(bootstrap, topic, records, rounds)
    for name, rate in result.items():
        print(f"{name:>10}: {rate:12,.0f} records/s")
    print(f"send_many / send: {result['send_many'] / result['send']:.2f}x; "
          f"poll_batch / poll: {result['poll_batch'] / result['poll']:.2f}x; poll_batch with every values column "
          f"made a list / poll: {values_run['poll_batch+values'] / values_run['poll']:.2f}x "
          f"({values_run['poll_batch+values']:,.0f} and {values_run['poll']:,.0f} records/s)")

if __name__ == "__main__":
    main()
