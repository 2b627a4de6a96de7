"""The notification service: "emails" each customer a confirmation (appends it to ``<state dir>/outbox.txt``).

    python examples/ecommerce/notification_service.py --bootstrap HOSTS --state-dir DIR
"""

from __future__ import annotations

from pathlib import Path

import click
from rill.client import Record, Retry
from service import run_service
from shop import DEFAULT_BOOTSTRAP


@click.command()
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--state-dir", type=click.Path(path_type=Path), required=True)
def main(bootstrap: str, state_dir: Path) -> None:
    with (state_dir / "outbox.txt").open("a") as outbox:
        def send_confirmation(record: Record) -> None:
            order = record.value
            outbox.write(f"to {order['customer']}: order {order['order_id']} confirmed, "
                         f"{order['amount_cents'] / 100:.2f} {order['currency']}\n")
            outbox.flush()

        run_service("notification", bootstrap, state_dir, send_confirmation, Retry(attempts=5, backoff_ms=200))


if __name__ == "__main__":
    main()
