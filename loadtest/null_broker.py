"""A broker that stores nothing: the sink against which the client's own ceiling is measured.

It speaks Rill's wire protocol (client/protocol.py) on one ZeroMQ ROUTER
socket, in a process of its own, and answers just enough for a Producer and
a Consumer to run at full speed against it:

- METADATA: every topic asked for exists, with the partition count given for
  it (``topics``), all led by this node;
- INIT_PRODUCER_ID: producer id 1, epoch 0 (idempotent producers);
- PRODUCE: acknowledged at once, offsets counted, the records dropped;
- LIST_OFFSETS: every partition starts at offset 0;
- FETCH: every partition asked for gets the same pre-encoded batches
  (``fetch_blob``), their base offsets patched to follow the fetch offset
  so the Consumer keeps them (its ceiling is decoding, not our I/O).

So the time a Producer or Consumer takes against it is the client's own:
encoding and sending, or receiving and decoding. Start it with ``start``
(a spawned child process, stopped by pid with ``stop``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
from dataclasses import dataclass

import msgspec
import zmq

from rill.client import protocol
from rill.client.batch import iter_batches, read_header
from rill.client.errors import UnsupportedVersionError

BASE_OFFSET = struct.Struct(">q")
HOST = "127.0.0.1"
NODE_ID = 0
FAR_AHEAD = 1 << 62  # the high watermark of every fetch answer


@dataclass(frozen=True)
class NullBroker:
    """A running null broker: its bootstrap address and process."""

    bootstrap: str
    process: multiprocessing.process.BaseProcess

    def stop(self) -> None:
        """Kill the process by pid and reap it."""
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(timeout=10)


def start(port: int, topics: dict[str, int], fetch_blob: bytes, timeout_s: float = 30) -> NullBroker:
    """Start a null broker on ``127.0.0.1:port`` answering for ``topics`` (name -> partition count);
    fetches return ``fetch_blob`` (whole batches, e.g. from ``batch_blob``)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=serve, args=(port, topics, fetch_blob, ready), daemon=True)
    process.start()
    if not ready.wait(timeout_s):
        process.kill()
        raise RuntimeError(f"the null broker did not start on port {port} within {timeout_s} s")
    return NullBroker(f"{HOST}:{port}", process)


def serve(port: int, topics: dict[str, int], fetch_blob: bytes, ready) -> None:
    """Child process: answer requests until killed."""
    socket = zmq.Context().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 10_000)
    socket.setsockopt(zmq.RCVHWM, 10_000)
    socket.bind(f"tcp://{HOST}:{port}")
    answers = Answers(port, topics, fetch_blob)
    ready.set()
    while True:
        identity, frame = socket.recv_multipart(copy=True)
        envelope = protocol.decode_request_envelope(frame)
        body = protocol.decode_request_body(envelope.api_key, envelope.body)
        try:
            answer = answers.answer(envelope.api_key, body)
        except UnsupportedVersionError as error:
            socket.send_multipart((identity, protocol.encode_response(envelope.correlation_id, None, error.code,
                                                                      str(error))))
            continue
        if isinstance(answer, bytearray):
            socket.send_multipart((identity, encoded_response(envelope.correlation_id, answer)))
        elif answer is not None:
            socket.send_multipart((identity, protocol.encode_response(envelope.correlation_id, answer)))


def encoded_response(correlation_id: int, body: bytearray) -> bytes:
    """A response frame around a body encoded already, with one copy of it: the envelope of a response
    without a body ends in its MessagePack nil, which the body takes the place of."""
    return b"".join((protocol.encode_response(correlation_id)[:-1], body))


class Answers:
    """What the null broker answers to each request it knows."""

    def __init__(self, port: int, topics: dict[str, int], fetch_blob: bytes):
        self._port = port
        self._topics = topics
        self._blob = fetch_blob
        self._batch_starts = [(position, header.record_count) for position, header in iter_batches(fetch_blob)]
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._templates: dict[tuple, tuple[bytearray, list[int]]] = {}

    def answer(self, api_key: int, body) -> msgspec.Struct | bytearray | None:
        """The response body for one request (a bytearray: encoded already); None for a produce that wants none
        (acks=0)."""
        if api_key == protocol.METADATA.key:
            return self._metadata(body)
        if api_key == protocol.INIT_PRODUCER_ID.key:
            return protocol.InitProducerIdResponse(0, "", 1, 0)
        if api_key == protocol.PRODUCE.key:
            return self._produce(body)
        if api_key == protocol.LIST_OFFSETS.key:
            return protocol.ListOffsetsResponse([
                protocol.TopicOffsetsResponse(topic.topic, [
                    protocol.PartitionOffsetResponse(p.partition, 0, "", 0, -1) for p in topic.partitions])
                for topic in body.topics])
        if api_key == protocol.FETCH.key:
            return self._fetch(body)
        raise UnsupportedVersionError(f"the null broker does not answer {protocol.APIS[api_key].name}")

    def _metadata(self, request: protocol.MetadataRequest) -> protocol.MetadataResponse:
        names = self._topics if not request.topics else request.topics
        return protocol.MetadataResponse(
            [protocol.BrokerMetadata(NODE_ID, HOST, self._port)], NODE_ID,
            [protocol.TopicMetadata(name, 0, "", [
                protocol.PartitionMetadata(p, 0, NODE_ID, 0, [NODE_ID], [NODE_ID])
                for p in range(self._topics.get(name, 1))]) for name in names])

    def _produce(self, request: protocol.ProduceRequest) -> protocol.ProduceResponse | None:
        topics = []
        for topic in request.topics:
            partitions = []
            for data in topic.partitions:
                key = (topic.topic, data.partition)
                base_offset = self._next_offsets.get(key, 0)
                self._next_offsets[key] = base_offset + read_header(data.records).record_count
                partitions.append(protocol.PartitionProduceResponse(data.partition, 0, "", base_offset, 0))
            topics.append(protocol.TopicProduceResponse(topic.topic, partitions))
        return None if request.acks == 0 else protocol.ProduceResponse(topics)

    def _fetch(self, request: protocol.FetchRequest) -> bytearray:
        """The encoded response: a template per request shape (topics and partitions), encoded once,
        with each copy of the blob's base offsets patched in place to follow its fetch offset."""
        shape = tuple((topic.topic, tuple(p.partition for p in topic.partitions)) for topic in request.topics)
        template = self._templates.get(shape)
        if template is None:
            template = self._templates[shape] = self._fetch_template(request)
        body, blob_positions = template
        for position, asked in zip(blob_positions, (p for topic in request.topics for p in topic.partitions)):
            offset = asked.fetch_offset
            for batch_position, count in self._batch_starts:
                BASE_OFFSET.pack_into(body, position + batch_position, offset)
                offset += count
        return body

    def _fetch_template(self, request: protocol.FetchRequest) -> tuple[bytearray, list[int]]:
        """A response body with the blob for every partition asked (high watermark: far ahead, so that
        its encoding never changes), and where each copy of the blob starts in it."""
        body = bytearray(msgspec.msgpack.encode(protocol.FetchResponse([
            protocol.TopicFetchResponse(topic.topic, [
                protocol.PartitionFetchResponse(p.partition, 0, "", FAR_AHEAD, 0, self._blob)
                for p in topic.partitions])
            for topic in request.topics])))
        positions, position = [], 0
        for _ in range(sum(len(topic.partitions) for topic in request.topics)):
            position = body.index(self._blob, position)
            positions.append(position)
            position += len(self._blob)
        return body, positions


def batch_blob(batches: list[bytes], max_bytes: int) -> bytes:
    """As many of ``batches`` (cycled) as fit in ``max_bytes``, at least one: a fetch response's records."""
    blob: list[bytes] = []
    size = index = 0
    while not blob or size + len(batches[index % len(batches)]) <= max_bytes:
        batch = batches[index % len(batches)]
        blob.append(batch)
        size += len(batch)
        index += 1
    return b"".join(blob)
