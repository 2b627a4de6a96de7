"""The order service: places orders at a steady rate for a while, publishing one OrderCreated event each.

Events are keyed by order id (so each order's events stay in one partition,
in order) and serialized with the registered JSON Schema: an order that does
not fit the schema fails at ``send`` with SerializationError, and nothing is
sent. The producer is idempotent (the default), so a retried send is stored once.

    python examples/ecommerce/order_service.py --bootstrap HOSTS --state-dir DIR --duration 20 --rate 50
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import click
from rill.client import JsonSchemaSerializer, Producer
from shop import DEFAULT_BOOTSTRAP, ORDERS_SUBJECT, ORDERS_TOPIC, stop_event, write_json

SKUS = ["mug", "tee", "cap", "sticker", "poster", "hoodie"]
CUSTOMERS = ["ada", "alan", "grace", "linus", "barbara", "ken"]


def new_order(order_id: int, rng: random.Random) -> dict:
    items = [{"sku": rng.choice(SKUS), "quantity": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))]
    return {"order_id": order_id, "customer": rng.choice(CUSTOMERS), "amount_cents": rng.randint(100, 20_000),
            "currency": rng.choice(["EUR", "USD", "GBP"]), "items": items}


@click.command()
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--state-dir", type=click.Path(path_type=Path), required=True)
@click.option("--duration", type=float, default=20.0, show_default=True, help="Seconds to place orders for.")
@click.option("--rate", type=float, default=50.0, show_default=True, help="Orders per second.")
def main(bootstrap: str, state_dir: Path, duration: float, rate: float) -> None:
    stop = stop_event()
    rng = random.Random()
    first_id = int(time.time() * 1000)  # ids of successive runs do not collide
    placed: list[tuple[int, object]] = []  # (order id, its send future)
    stats_path = state_dir / "order.json"
    with Producer(bootstrap, value_serializer=JsonSchemaSerializer(bootstrap, ORDERS_SUBJECT)) as producer:
        start = time.monotonic()
        while not stop.is_set() and time.monotonic() - start < duration:
            order_id = first_id + len(placed)
            placed.append((order_id, producer.send(ORDERS_TOPIC, new_order(order_id, rng),
                                                   key=str(order_id).encode())))
            if len(placed) % 10 == 0:
                write_json(stats_path, {"placed": len(placed)})
            stop.wait(max(0.0, start + len(placed) / rate - time.monotonic()))
        producer.flush()
    acknowledged = [order_id for order_id, future in placed if future.exception() is None]
    (state_dir / "order.placed").write_text("".join(f"{order_id}\n" for order_id in acknowledged))
    write_json(stats_path, {"placed": len(acknowledged), "failed": len(placed) - len(acknowledged), "done": True})


if __name__ == "__main__":
    main()
