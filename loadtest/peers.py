"""The same measurements against Redis Streams (redis-py) and NATS JetStream (nats-py).

The values, counts and rates are the bench's (workload.py); the servers
come from peer_servers.py.

- Redis: produce is pipelined XADD (``PIPELINE`` commands per round trip)
  to one stream, or, keyed, to one of four streams by the key's CRC-32 (the
  Redis way to partition); consume is XREAD of up to 10,000 entries per
  call from the first entry, over one or four streams; the latency reader
  is XREAD BLOCK from "$" in a second process, the writer one pipeline of
  XADDs per 1 ms step.
- NATS: produce is JetStream publishes kept ``WINDOW`` in flight (each
  awaits its PubAck), to one stream (R1 on one server, R3 on a 3-server
  cluster); consume is a pull consumer fetching 1,000 messages at a time,
  acknowledging the last of each (AckAll); the latency reader is a pull
  consumer from new messages, the writer core publishes into the stream's
  subject, which the server stores before any consumer sees them.
  Failover: kill -9 of the stream's leader (R3) while a publish every 5 ms
  awaits its PubAck; the time to the first PubAck after the kill.
"""

from __future__ import annotations

import asyncio
import time
import zlib

from latency import measure, read_until_done
from peer_servers import HOST, NatsCluster
from throughput import KEY_COUNT
from workload import SEND_TIME, VALUE_COUNT, make_values, paced, timed_value

PIPELINE = 1_000  # Redis commands per round trip
READ_COUNT = 10_000  # entries per XREAD, as the Consumer's max_poll_records
WINDOW = 1_000  # JetStream publishes awaiting their PubAck at once
FETCH_BATCH = 1_000
FIELD = b"v"


# ---- Redis Streams ------------------------------------------------------------------------------------------


def _redis(port: int):
    import redis

    return redis.Redis(host=HOST, port=port)


def redis_produce(port: int, streams: list[str], value_bytes: int, records: int, keyed: bool = False) -> float:
    """Records/s of pipelined XADD; ``keyed``: KEY_COUNT keys, each record to streams[crc32(key) % n]."""
    values = make_values(VALUE_COUNT, value_bytes)
    keys = [b"customer-%04d" % number for number in range(KEY_COUNT)]
    targets = [streams[zlib.crc32(key) % len(streams)] for key in keys] if keyed else streams[:1]
    client = _redis(port)
    started = time.perf_counter()
    for start in range(0, records, PIPELINE):
        pipeline = client.pipeline(transaction=False)
        for number in range(start, min(records, start + PIPELINE)):
            pipeline.xadd(targets[number % len(targets)], {FIELD: values[number % VALUE_COUNT]})
        pipeline.execute()
    elapsed = time.perf_counter() - started
    client.close()
    return records / elapsed


def redis_consume(port: int, streams: list[str], expected: int, timeout_s: float = 300) -> float:
    """Records/s of XREAD from the first entry of ``streams`` until ``expected`` entries came."""
    client = _redis(port)
    last_ids = {stream: "0-0" for stream in streams}
    received = 0
    started = time.perf_counter()
    deadline = started + timeout_s
    while received < expected and time.perf_counter() < deadline:
        for stream, entries in client.xread(last_ids, count=READ_COUNT, block=1_000) or []:
            received += len(entries)
            last_ids[stream.decode()] = entries[-1][0]
    elapsed = time.perf_counter() - started
    client.close()
    if received < expected:
        raise RuntimeError(f"Redis returned {received:,} of {expected:,} entries in {timeout_s} s")
    return received / elapsed


def redis_reader(port: int, stream: str, ready, done, results) -> None:
    """Child process: XREAD BLOCK of new entries."""
    client = _redis(port)
    last_id = client.xinfo_stream(stream)["last-generated-id"] if client.exists(stream) else "0-0"
    ready.set()

    def poll() -> list[bytes]:
        nonlocal last_id
        answer = client.xread({stream: last_id}, count=READ_COUNT, block=100)
        if not answer:
            return []
        entries = answer[0][1]
        last_id = entries[-1][0]
        return [fields[FIELD] for _, fields in entries]

    read_until_done(poll, done, results)


def redis_latency(port: int, stream: str, rate: int, seconds: float, value_bytes: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, records) at ``rate`` records/s: one pipeline of XADDs per 1 ms step."""
    padding = b" " * (value_bytes - SEND_TIME.size)
    client = _redis(port)

    def send(count: int) -> None:
        pipeline = client.pipeline(transaction=False)
        for _ in range(count):
            pipeline.xadd(stream, {FIELD: timed_value(padding)})
        pipeline.execute()

    try:
        return measure(redis_reader, (port, stream), lambda: paced(send, int(rate * seconds), rate))
    finally:
        client.close()


# ---- NATS JetStream -----------------------------------------------------------------------------------------


async def _jetstream(urls: list[str]):
    import nats

    connection = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    return connection, connection.jetstream()


async def _add_stream(js, stream: str, replicas: int, timeout_s: float = 30) -> None:
    """Create the stream (file storage), retrying while a new cluster elects its meta leader."""
    from nats.js.api import StorageType
    from nats.js.errors import Error as JetStreamError
    from nats.errors import TimeoutError as NatsTimeout

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await js.add_stream(name=stream, subjects=[f"{stream}.>"], storage=StorageType.FILE,
                                num_replicas=replicas)
            return
        except (JetStreamError, NatsTimeout):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def create_nats_stream(urls: list[str], stream: str, replicas: int) -> None:
    async def create() -> None:
        connection, js = await _jetstream(urls)
        await _add_stream(js, stream, replicas)
        await connection.close()

    asyncio.run(create())


def nats_produce(urls: list[str], stream: str, value_bytes: int, records: int) -> float:
    """Records/s of JetStream publishes, WINDOW awaiting their PubAck at once."""
    values = make_values(VALUE_COUNT, value_bytes)

    async def produce() -> float:
        connection, js = await _jetstream(urls)
        subject = f"{stream}.orders"
        started = time.perf_counter()
        for start in range(0, records, WINDOW):
            await asyncio.gather(*(js.publish(subject, values[number % VALUE_COUNT])
                                   for number in range(start, min(records, start + WINDOW))))
        elapsed = time.perf_counter() - started
        await connection.close()
        return records / elapsed

    return asyncio.run(produce())


async def _pull(js, stream: str, deliver_new: bool):
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    config = ConsumerConfig(ack_policy=AckPolicy.ALL,
                            deliver_policy=DeliverPolicy.NEW if deliver_new else DeliverPolicy.ALL)
    return await js.pull_subscribe(f"{stream}.>", stream=stream, config=config)


async def _fetch(subscription, timeout_s: float) -> list:
    """Up to FETCH_BATCH messages, the last acknowledged (AckAll); [] when none came within ``timeout_s``."""
    from nats.errors import TimeoutError as NatsTimeout

    try:
        messages = await subscription.fetch(FETCH_BATCH, timeout=timeout_s)
    except (NatsTimeout, asyncio.TimeoutError):  # nats-py raises either, depending on where the wait ended
        return []
    if messages:
        await messages[-1].ack()
    return messages


def nats_consume(urls: list[str], stream: str, expected: int, timeout_s: float = 300) -> float:
    """Records/s of a pull consumer reading the stream from its first message."""

    async def consume() -> float:
        connection, js = await _jetstream(urls)
        subscription = await _pull(js, stream, deliver_new=False)
        received = 0
        started = time.perf_counter()
        deadline = started + timeout_s
        while received < expected and time.perf_counter() < deadline:
            received += len(await _fetch(subscription, 1.0))
        elapsed = time.perf_counter() - started
        await connection.close()
        if received < expected:
            raise RuntimeError(f"JetStream delivered {received:,} of {expected:,} messages in {timeout_s} s")
        return received / elapsed

    return asyncio.run(consume())


def nats_reader(urls: list[str], stream: str, ready, done, results) -> None:
    """Child process: a pull consumer of new messages."""
    loop = asyncio.new_event_loop()
    connection, js = loop.run_until_complete(_jetstream(urls))
    subscription = loop.run_until_complete(_pull(js, stream, deliver_new=True))
    ready.set()
    read_until_done(lambda: [message.data for message in loop.run_until_complete(_fetch(subscription, 0.1))],
                    done, results)
    loop.run_until_complete(connection.close())
    loop.close()


def nats_latency(urls: list[str], stream: str, rate: int, seconds: float, value_bytes: int
                 ) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, records) at ``rate`` records/s of core publishes into the stream's subject."""
    padding = b" " * (value_bytes - SEND_TIME.size)
    loop = asyncio.new_event_loop()
    connection, _ = loop.run_until_complete(_jetstream(urls))
    subject = f"{stream}.latency"

    async def publish(count: int) -> None:
        for _ in range(count):
            await connection.publish(subject, timed_value(padding))
        await connection.flush()

    def send(count: int) -> None:
        loop.run_until_complete(publish(count))

    try:
        return measure(nats_reader, (urls, stream), lambda: paced(send, int(rate * seconds), rate))
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


def nats_failover(cluster: NatsCluster, stream: str, timeout_s: float = 60) -> float:
    """Seconds from kill -9 of the R3 stream's leader to the first PubAck of a publish sent after it."""

    async def failover() -> float:
        connection, js = await _jetstream(cluster.urls)
        leader = (await js.stream_info(stream)).cluster.leader
        subject = f"{stream}.failover"
        acked: list[float] = []

        async def probe() -> None:
            try:
                await js.publish(subject, b"failover probe", timeout=2)
                acked.append(time.monotonic())
            except Exception:  # noqa: BLE001 - a publish that fails during the election; the next one counts
                pass

        probes = []
        killed_at = time.monotonic()
        cluster.kill(int(leader.removeprefix("n")))
        while not acked and time.monotonic() < killed_at + timeout_s:
            probes.append(asyncio.ensure_future(probe()))
            await asyncio.sleep(0.005)
        await asyncio.gather(*probes)
        await connection.close()
        if not acked:
            raise RuntimeError(f"no JetStream publish succeeded within {timeout_s} s of the kill")
        return min(acked) - killed_at

    return asyncio.run(failover())
