"""The two ceilings Rill's end-to-end numbers are measured against.

- The client's ceiling: Rill's own Producer and Consumer (throughput.py)
  against the null broker (null_broker.py), which acknowledges every produce
  without storing it and answers every fetch with the same pre-encoded
  batches. What they reach there is what the client can do at most.
- The broker's ceiling: a raw client that does nothing but keep requests in
  flight on one DEALER socket. Produce requests are encoded once, from one
  batch built once with client/batch.py, and sent over and over; fetches are
  encoded once for successive offsets and what comes back is only counted.
  What a broker serves it is what the broker can do at most with one
  connection.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Iterator

import zmq

from rill.client import protocol
from rill.client.batch import read_header
from rill.cluster.layout import free_ports

import null_broker
from throughput import bench_consume, bench_produce
from workload import Settings, make_batches

FETCH_BYTES = 1_048_576  # the Consumer's max_partition_fetch_bytes default: a fetch response per partition
WINDOW = 64  # raw requests in flight (a broker parks at most 100 acks=all requests per connection)
REQUEST_TIMEOUT_MS = 30_000
NULL_TOPICS = {"ceiling-1": 1, "ceiling-4": 4}  # the null broker's topics: name -> partitions


@contextmanager
def null_broker_for(settings: Settings) -> Iterator[str]:
    """A null broker whose fetches return FETCH_BYTES of the bench's batches; yields its bootstrap."""
    broker = null_broker.start(free_ports(1)[0], NULL_TOPICS,
                               null_broker.batch_blob(make_batches(settings), FETCH_BYTES))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def client_produce_ceiling(bootstrap: str, settings: Settings, acks: str = "1", partitions: int = 1,
                           keyed: bool = False, records: int | None = None) -> float:
    """Records/s of the Producer against the null broker at ``bootstrap``."""
    return bench_produce(bootstrap, f"ceiling-{partitions}", settings, acks, records=records, keyed=keyed)


def client_consume_ceiling(bootstrap: str, settings: Settings, partitions: int = 1,
                           records: int | None = None) -> float:
    """Records/s of the Consumer decoding the null broker's fetch responses."""
    return bench_consume(bootstrap, f"ceiling-{partitions}", settings.records if records is None else records)


class RawClient:
    """One DEALER socket to a broker, keeping up to WINDOW pre-encoded requests in flight."""

    def __init__(self, address: str):
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 10_000)
        self._socket.setsockopt(zmq.SNDHWM, 10_000)
        self._socket.connect(f"tcp://{address}")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def pipeline(self, frames: list[bytes], count: int, timeout_s: float = 300) -> tuple[float, bytes]:
        """Send ``count`` requests (``frames`` cycled), WINDOW in flight; (seconds, the last response)."""
        sent = answered = 0
        last = b""
        started = time.perf_counter()
        deadline = started + timeout_s
        while answered < count:
            while sent < count and sent - answered < WINDOW:
                self._socket.send(frames[sent % len(frames)], copy=False)
                sent += 1
            if not self._socket.poll(max(1, int((deadline - time.perf_counter()) * 1000))):
                raise RuntimeError(f"the broker answered {answered:,} of {count:,} raw requests in {timeout_s} s")
            last = self._socket.recv(copy=True)
            answered += 1
        return time.perf_counter() - started, last


def _checked(api: protocol.Api, frame: bytes) -> object:
    """A response body, or RuntimeError if it carries an error (so a ceiling is never a rate of errors)."""
    envelope = protocol.decode_response_envelope(frame)
    if envelope.error_code:
        raise RuntimeError(f"raw {api.name} failed: {envelope.error_message}")
    body = protocol.decode_response_body(api.key, envelope.body)
    for topic in body.topics:
        for partition in topic.partitions:
            if partition.error_code:
                raise RuntimeError(f"raw {api.name} failed on partition {partition.partition}: "
                                   f"{partition.error_message}")
    return body


def broker_produce_ceiling(address: str, topic: str, settings: Settings, acks: int,
                           partitions: int = 1, records: int | None = None) -> float:
    """Records/s a broker (the leader of every partition of ``topic``, at ``address``) acknowledges for
    pre-encoded produce requests of one batch each, round robin over the partitions."""
    batch = make_batches(settings, count=1)[0]
    per_request = read_header(batch).record_count
    frames = [protocol.encode_request(protocol.PRODUCE, number, protocol.ProduceRequest(
        acks, REQUEST_TIMEOUT_MS, [protocol.TopicProduceData(topic, [protocol.PartitionProduceData(number, batch)])]))
        for number in range(partitions)]
    count = math.ceil((settings.records if records is None else records) / per_request)
    with RawClient(address) as client:
        _checked(protocol.PRODUCE, client.pipeline(frames, 1)[1])  # the connection before the clock
        elapsed, last = client.pipeline(frames, count)
    _checked(protocol.PRODUCE, last)
    return count * per_request / elapsed


def broker_fetch_ceiling(address: str, topic: str, settings: Settings, partitions: int = 1) -> float:
    """Records/s a broker serves to pre-encoded fetches of what broker_produce_ceiling wrote to ``topic``
    (``partitions`` partitions, each a run of one identical batch). Each fetch asks every partition for
    a whole number of batches from a known offset, so the requests need nothing from the responses
    and stay pipelined; the responses are only counted."""
    batch = make_batches(settings, count=1)[0]
    per_batch = read_header(batch).record_count
    with RawClient(address) as client:
        stored = _stored_records(client, topic, partitions)
        batches_each = max(1, min(FETCH_BYTES // len(batch), stored // per_batch // 8))
        step = batches_each * per_batch
        frames = [protocol.encode_request(protocol.FETCH, number, protocol.FetchRequest(
            0, 1, batches_each * len(batch) * partitions,
            [protocol.TopicFetch(topic, [protocol.PartitionFetch(p, number * step, batches_each * len(batch))
                                         for p in range(partitions)])]))
            for number in range(stored // step)]
        elapsed, last = client.pipeline(frames, len(frames))
    if any(not partition.records for topic_data in _checked(protocol.FETCH, last).topics
           for partition in topic_data.partitions):
        raise RuntimeError(f"a raw fetch of {topic} came back without records")
    return len(frames) * step * partitions / elapsed


def _stored_records(client: RawClient, topic: str, partitions: int) -> int:
    """The fewest records any partition of ``topic`` holds (its high watermark)."""
    request = protocol.ListOffsetsRequest([protocol.TopicListOffsets(topic, [
        protocol.PartitionListOffsets(p, protocol.LATEST_TIMESTAMP) for p in range(partitions)])])
    _, frame = client.pipeline([protocol.encode_request(protocol.LIST_OFFSETS, 0, request)], 1)
    body = _checked(protocol.LIST_OFFSETS, frame)
    return min(partition.offset for topic_offsets in body.topics for partition in topic_offsets.partitions)
