"""The payment service: charges each order. Some charges fail on purpose, to show retries and dead letters.

- a gateway timeout (every tenth order, first attempt only) is retried and then succeeds;
- a declined card (amount a multiple of 13 cents) fails every attempt: after its retries the order goes
  to ``orders.order.created.dlq`` with headers saying why, and the service moves on.

    python examples/ecommerce/payment_service.py --bootstrap HOSTS --state-dir DIR
"""

from __future__ import annotations

from pathlib import Path

import click
from rill.client import Record, Retry
from service import run_service
from shop import DEFAULT_BOOTSTRAP


class CardDeclined(Exception):
    """The payment provider refused the card: retrying will not help."""


class GatewayTimeout(Exception):
    """The payment provider did not answer in time: a retry may succeed."""


class Payments:
    def __init__(self) -> None:
        self._timed_out: set[int] = set()  # orders whose first attempt timed out (bounded by the run)

    def charge(self, record: Record) -> None:
        order = record.value
        if order["amount_cents"] % 13 == 0:
            raise CardDeclined(f"card of {order['customer']} declined for {order['amount_cents']} cents")
        if order["order_id"] % 10 == 3 and order["order_id"] not in self._timed_out:
            self._timed_out.add(order["order_id"])
            raise GatewayTimeout(f"payment gateway timed out on order {order['order_id']}")


@click.command()
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--state-dir", type=click.Path(path_type=Path), required=True)
def main(bootstrap: str, state_dir: Path) -> None:
    run_service("payment", bootstrap, state_dir, Payments().charge, Retry(attempts=3, backoff_ms=100))


if __name__ == "__main__":
    main()
