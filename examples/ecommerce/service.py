"""The shape every consuming service of the demo shares: a consumer group member that runs a handler per
order with retries and a dead-letter topic, and reports its counters.

``run_service`` subscribes to ``orders.order.created`` in the service's own
group, decodes values with the registered schema, and calls ``run_handler``
in one-second rounds until SIGTERM, writing the running totals (handled,
retried, dead-lettered) to ``<state dir>/<service>.json`` after each round.
Offsets are committed by run_handler only after a record is handled or its
dead-letter copy is acknowledged, so a restarted service goes on from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rill.client import Consumer, JsonSchemaDeserializer, Record, Retry, run_handler
from shop import ORDERS_TOPIC, SERVICES, stop_event, write_json

ROUND_S = 1.0


def run_service(name: str, bootstrap: str, state_dir: Path, handle: Callable[[Record], None], retry: Retry) -> None:
    """Serve until SIGTERM or SIGINT; ``handle`` raises to fail a record."""
    stop = stop_event()
    totals = {"handled": 0, "retried": 0, "dead_lettered": 0}
    handled_log = (state_dir / f"{name}.handled").open("a")

    def handle_and_note(record: Record) -> None:
        handle(record)
        handled_log.write(f"{record.value['order_id']}\n")
        handled_log.flush()

    with Consumer(bootstrap, group_id=SERVICES[name], topics=[ORDERS_TOPIC], client_id=f"{name}-service",
                  enable_auto_commit=False, auto_offset_reset="earliest",
                  value_deserializer=JsonSchemaDeserializer(bootstrap)) as consumer:
        while not stop.is_set():
            stats = run_handler(consumer, handle_and_note, retry=retry, timeout=ROUND_S)
            totals["handled"] += stats.handled
            totals["retried"] += stats.retried
            totals["dead_lettered"] += stats.dead_lettered
            write_json(state_dir / f"{name}.json", totals)
    handled_log.close()
