"""A broker never goes deaf: a burst of garbage leaves it serving, and a long-running task that dies
takes the process down with a CRITICAL line and a non-zero exit code instead of leaving a zombie.

The burst is the one that once left a broker deaf: 3,000 multi-frame ZeroMQ messages (1 to 8 frames of random bytes, a few frames of
up to 4 MiB), seeded, mixed with frames shaped like requests whose strings are not UTF-8 (msgspec raises
UnicodeDecodeError for those, which used to end the serve loop).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from brokers import BrokerProcess, wait_until
from raw_wire import RawConnection
from rill.client import Admin, Consumer, Producer, TopicPartition, protocol
from rill.client.errors import (
    ClusterAuthorizationError,
    InvalidRequestError,
    UnsupportedVersionError,
)
from rill.node.supervisor import FATAL_EXIT_CODE

SEED = 20_240_808
MESSAGES = 3_000
LARGE_FRAME_EVERY = 300  # messages; such a message carries one frame of 1 to 4 MiB
LARGE_FRAME_BYTES_MAX = 4 * 1024 * 1024
SESSION_TIMEOUT_MS = 1_000  # as when the deaf broker was fenced after 1 s without a heartbeat
HERE = Path(__file__).parent


def msgpack_str(data: bytes) -> bytes:
    """A MessagePack str header (fixstr or str8) over ``data``, valid UTF-8 or not."""
    return (bytes([0xA0 | len(data)]) if len(data) < 32 else bytes([0xD9, len(data)])) + data


def not_utf8(rng: random.Random) -> bytes:
    return b"\xff" + rng.randbytes(rng.randrange(0, 40))


def request_shaped(rng: random.Random) -> bytes:
    """An envelope [api_key, version, correlation_id, client_id, body] with a string that is not UTF-8 in the
    client id, or in a body of a real request type."""
    api_key = rng.randrange(0, 30)
    if rng.random() < 0.5:
        return bytes([0x95, api_key, 0, rng.randrange(0, 128)]) + msgpack_str(not_utf8(rng)) + rng.randbytes(
            rng.randrange(0, 64))
    body = bytes([0x91, 0x91]) + msgpack_str(not_utf8(rng))  # [["\xff..."]]: a list of one bad string
    return bytes([0x95, api_key, 0, rng.randrange(0, 128)]) + msgpack_str(b"garbage") + body


def garbage_frame(rng: random.Random, large: bool) -> bytes:
    if large:
        return rng.randbytes(rng.randrange(1024 * 1024, LARGE_FRAME_BYTES_MAX + 1))
    if rng.random() < 0.4:
        return request_shaped(rng)
    return rng.randbytes(rng.randrange(0, 512))


def garbage_messages(rng: random.Random):
    """The burst: MESSAGES messages of 1 to 8 frames each."""
    for number in range(MESSAGES):
        count = rng.randrange(1, 9)
        large_at = rng.randrange(count) if number % LARGE_FRAME_EVERY == 0 else -1
        yield [garbage_frame(rng, index == large_at) for index in range(count)]


@pytest.fixture
def burst_broker(tmp_path: Path):
    """A broker of its own (the burst may break it), fenced 1 s after its last heartbeat, as when it was found;
    a controlled shutdown would wait long for a deaf node."""
    broker = BrokerProcess(tmp_path / "broker", settings={
        "session_timeout_ms": SESSION_TIMEOUT_MS, "heartbeat_interval_ms": 200,
        "controlled_shutdown_timeout_ms": 120_000})
    try:
        yield broker.start()
    finally:
        broker.stop()


def node_status(address: str) -> protocol.NodeStatusResponse:
    context = zmq.Context()
    try:
        with RawConnection(context, address, "status-probe") as connection:
            return connection.request(protocol.NODE_STATUS, protocol.NodeStatusRequest(), timeout_s=5)
    finally:
        context.term()


def check_serves_a_fresh_client(bootstrap: str, topic: str) -> None:
    """Metadata, produce and fetch from clients that connect after the burst."""
    with Admin(bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic(topic, partitions=1, replication_factor=1)
        assert topic in admin.list_topics()
    with Producer(bootstrap, acks="all") as producer:
        metadata = producer.send(topic, b"after the burst").result(timeout=10)
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        records = wait_until(lambda: consumer.poll(0.2), 20, "the record produced after the burst")
    assert [(r.offset, r.value) for r in records] == [(metadata.offset, b"after the burst")]


def test_a_garbage_burst_leaves_the_broker_serving_and_registered(burst_broker, topic_name):
    context = zmq.Context()
    try:
        with RawConnection(context, burst_broker.bootstrap, "garbage") as garbage:
            for frames in garbage_messages(random.Random(SEED)):
                garbage.send_frames(frames)
                garbage.collect_ready()
            garbage.collect(MESSAGES, timeout_s=30)
            answers = garbage.received
        burst_ended = time.monotonic()
    finally:
        context.term()
    codes = [answer.error_code for answer in answers]
    assert len(answers) == MESSAGES, "every garbage message got exactly one answer"
    # A few shapes decode by chance (an empty request struct ignores extra items): answered as real requests.
    assert set(codes) <= {0, InvalidRequestError.code, UnsupportedVersionError.code, ClusterAuthorizationError.code}
    assert codes.count(InvalidRequestError.code) > 0.9 * MESSAGES, "nearly all are refused as malformed"
    check_serves_a_fresh_client(burst_broker.bootstrap, topic_name)
    # Fencing needs a session timeout without heartbeats: let two pass since the burst, then look.
    wait_until(lambda: time.monotonic() > burst_ended + 2 * SESSION_TIMEOUT_MS / 1000, 10, "two session timeouts")
    status = node_status(burst_broker.bootstrap)
    assert not status.fenced, "the broker is still registered with the controller"
    assert "fencing broker" not in burst_broker.output()
    burst_broker.send_signal(15)
    assert burst_broker.wait_exit(30) == 0, "SIGTERM stops it cleanly, well before the controlled-shutdown timeout"


class HeartbeatFaultBroker(BrokerProcess):
    """A broker started by heartbeat_fault_node.py: its heartbeat task raises once ``trigger`` exists."""

    def __init__(self, data_dir: Path, trigger: Path):
        super().__init__(data_dir)
        self.trigger = trigger

    def spawn(self) -> "HeartbeatFaultBroker":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "heartbeat_fault_node.py"), str(self.trigger), "node",
                 "--id", str(self.node_id), "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self


def test_a_dying_heartbeat_task_takes_the_process_down_with_a_critical_line(tmp_path: Path):
    trigger = tmp_path / "fail-now"
    broker = HeartbeatFaultBroker(tmp_path / "broker", trigger)
    try:
        broker.start()
        trigger.touch()
        code = broker.wait_exit(30)
    finally:
        broker.stop()
    output = broker.output()
    assert code == FATAL_EXIT_CODE, output[-3000:]
    assert "CRITICAL rill.node.supervisor: task 'heartbeats' died: RuntimeError('injected fault" in output
    assert "Traceback" in output and "raise RuntimeError(\"injected fault" in output, "the traceback is logged"
    assert "node 1 exits after a fatal failure" in output
