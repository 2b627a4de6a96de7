"""The inventory service: reserves the stock of every order's items.

    python examples/ecommerce/inventory_service.py --bootstrap HOSTS --state-dir DIR
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
from rill.client import Record, Retry
from service import run_service
from shop import DEFAULT_BOOTSTRAP


class Inventory:
    def __init__(self) -> None:
        self.reserved: Counter[str] = Counter()

    def reserve(self, record: Record) -> None:
        for item in record.value["items"]:
            self.reserved[item["sku"]] += item["quantity"]


@click.command()
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--state-dir", type=click.Path(path_type=Path), required=True)
def main(bootstrap: str, state_dir: Path) -> None:
    run_service("inventory", bootstrap, state_dir, Inventory().reserve, Retry(attempts=3, backoff_ms=100))


if __name__ == "__main__":
    main()
