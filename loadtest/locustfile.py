"""Locust load test: services publishing OrderCreated events, and a consumer group reading them.

Two kinds of users against a running cluster (``make cluster``; the
bootstrap list is ``--host``, else RILL_BOOTSTRAP, else the local default):

- ``Publisher``: sends one keyed OrderCreated event per task and waits for
  its acknowledgement (acks="all"); Locust records each send as a
  "produce" request, its time the acknowledgement latency.
- ``GroupConsumer``: one member of the group ``locust-readers`` per user;
  each poll that returns records is a "consume" request whose time is the
  end-to-end delay of the newest record (send time to receipt) and whose
  length is the number of records.

The topic (``locust-orders``, 6 partitions) is created when the test
starts if missing. Locust runs users as gevent greenlets; the client then
uses zmq.green (client/zmq_flavor.py), so its blocking calls yield. Each
Locust process shares one producer among its publishers, as a service would.
Run it with ``make loadtest`` (headless, knobs USERS, RUN_TIME, BOOTSTRAP).
"""

from __future__ import annotations

import json
import os
import time
from itertools import count

from locust import User, between, events, task

from rill.client import Admin, Consumer, Producer
from rill.client.errors import RillError, TopicAlreadyExistsError

TOPIC = "locust-orders"
GROUP = "locust-readers"
PARTITIONS = 6
DEFAULT_BOOTSTRAP = "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
ACK_TIMEOUT_S = 30

_producers: dict[str, Producer] = {}
_order_ids = count()


def bootstrap_of(environment) -> str:
    return environment.host or os.environ.get("RILL_BOOTSTRAP", DEFAULT_BOOTSTRAP)


@events.test_start.add_listener
def create_topic(environment, **_) -> None:
    """The load test's topic, replicated on up to three brokers."""
    with Admin(bootstrap_of(environment)) as admin:
        brokers = len(admin.describe_cluster().brokers)
        try:
            admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=min(3, brokers))
        except TopicAlreadyExistsError:
            pass


@events.quitting.add_listener
def close_producers(environment, **_) -> None:
    for producer in _producers.values():
        producer.close()
    _producers.clear()


def shared_producer(bootstrap: str) -> Producer:
    if bootstrap not in _producers:
        _producers[bootstrap] = Producer(bootstrap, acks="all")
    return _producers[bootstrap]


class Publisher(User):
    """An order service: one OrderCreated event per task, acknowledged by the in-sync replicas."""

    weight = 3
    wait_time = between(0.001, 0.01)

    def on_start(self) -> None:
        self.producer = shared_producer(bootstrap_of(self.environment))

    @task
    def publish(self) -> None:
        order_id = next(_order_ids)
        value = json.dumps({"type": "OrderCreated", "order_id": order_id, "sent_ns": time.time_ns()}).encode()
        started = time.perf_counter()
        error = None
        try:
            self.producer.send(TOPIC, value, key=str(order_id).encode()).result(timeout=ACK_TIMEOUT_S)
        except (RillError, TimeoutError) as failure:
            error = failure
        self.environment.events.request.fire(
            request_type="produce", name=TOPIC, response_time=(time.perf_counter() - started) * 1000,
            response_length=len(value), exception=error, context={})


class GroupConsumer(User):
    """A payment service instance: one member of the consumer group, committing as it goes."""

    weight = 1
    wait_time = between(0, 0.001)

    def on_start(self) -> None:
        self.consumer = Consumer(bootstrap_of(self.environment), group_id=GROUP, topics=[TOPIC],
                                 auto_offset_reset="latest", heartbeat_interval_ms=500, session_timeout_ms=6000)

    def on_stop(self) -> None:
        self.consumer.close()

    @task
    def consume(self) -> None:
        started = time.perf_counter()
        try:
            records = self.consumer.poll(timeout=0.5)
        except RillError as error:
            self.environment.events.request.fire(
                request_type="consume", name=GROUP, response_time=(time.perf_counter() - started) * 1000,
                response_length=0, exception=error, context={})
            return
        if records:
            newest = json.loads(records[-1].value)["sent_ns"]
            self.environment.events.request.fire(
                request_type="consume", name=GROUP, response_time=(time.time_ns() - newest) / 1e6,
                response_length=len(records), exception=None, context={})
