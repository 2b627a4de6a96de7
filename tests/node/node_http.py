"""Reading a node's HTTP port in tests: GET a path, scrape /metrics into a lookup table."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from brokers import LOCAL_HOST
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 5.0


def get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of GET ``path``; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://{LOCAL_HOST}:{port}{path}", timeout=TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(port: int, path: str) -> tuple[int, dict]:
    status, body = get(port, path)
    return status, json.loads(body)


def answers(port: int) -> bool:
    """Whether anything answers HTTP on the port now."""
    try:
        get(port, "/health")
        return True
    except OSError:
        return False


class Scrape:
    """One /metrics answer, parsed with prometheus-client's own parser."""

    def __init__(self, text: str):
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = {(sample.name, frozenset(sample.labels.items())): sample.value
                        for family in self.families.values() for sample in family.samples}

    def value(self, name: str, default: float | None = None, **labels: str) -> float | None:
        """The sample ``name`` with exactly these labels; ``default`` if there is none."""
        return self.samples.get((name, frozenset(labels.items())), default)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample called ``name``."""
        return [dict(labels) for sample_name, labels in self.samples if sample_name == name]


def scrape(port: int) -> Scrape:
    status, body = get(port, "/metrics")
    assert status == 200, f"/metrics answered {status}: {body[:300]!r}"
    return Scrape(body.decode())
