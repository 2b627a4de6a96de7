"""What the e-commerce demo's services share: topic, schema, consumer groups, and how each reports progress.

The flow every guide to Kafka in microservices draws: the order service
publishes ``OrderCreated`` events, keyed by order id, to
``orders.order.created`` with a registered JSON Schema; the payment,
inventory and notification services each handle every order in their own
consumer group. Each service writes its counters to ``<state dir>/<service>.json``
(the demo's live summary reads them) and appends the order ids it handled to
``<state dir>/<service>.handled``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

ORDERS_TOPIC = "orders.order.created"
ORDERS_SUBJECT = f"{ORDERS_TOPIC}-value"
ORDERS_PARTITIONS = 3
SERVICES = {"payment": "payments", "inventory": "inventory", "notification": "notifications"}  # service: group
DEFAULT_BOOTSTRAP = "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"

ORDER_CREATED_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "OrderCreated",
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1},
        "customer": {"type": "string", "minLength": 1},
        "amount_cents": {"type": "integer", "minimum": 1},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                "required": ["sku", "quantity"],
            },
        },
    },
    "required": ["order_id", "customer", "amount_cents", "currency", "items"],
}


def write_json(path: Path, data: dict) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT: services finish the record in hand, commit, and exit."""
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    return stop
