"""Client metrics for Prometheus: a prometheus_client collector that reads ``metrics()`` at scrape time.

For services that already serve ``/metrics`` with prometheus_client::

    from rill.client import prometheus
    prometheus.register(producer)            # the default registry; or registry=..., prefix=...

Each key of ``metrics()`` becomes one family, ``<prefix>_producer_<key>``
or ``<prefix>_consumer_<key>``, labelled with the client's ``client_id``:
keys ending in ``_total`` are counters, the rest gauges; milliseconds are
exported in seconds (``request_latency_avg_ms`` as
``..._request_latency_avg_seconds``), as Prometheus wants base units; a
dict becomes one labelled series per entry (``record_errors_by_type`` a
counter by ``error``, ``records_lag`` a gauge by ``topic`` and
``partition``). The clients registered on one registry under one prefix
share their families, so each needs its own ``client_id`` (ValueError
otherwise). Nothing is counted for Prometheus: a scrape costs one
``metrics()`` call per client.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator

from prometheus_client.core import REGISTRY, CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from rill.client import consumer_metrics, producer_metrics
from rill.client.consumer import Consumer
from rill.client.producer import Producer

Client = Producer | Consumer
DEFAULT_PREFIX = "rill_client"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")  # Prometheus's rule for metric names
# Dict-valued metrics: whether they count, and the labels of an entry (from its key).
LABELLED: dict[str, tuple[bool, tuple[str, ...]]] = {
    "record_errors_by_type": (True, ("error",)),
    "records_lag": (False, ("topic", "partition")),
}


class ClientsCollector:
    """The metrics of every client registered on one registry under one prefix. Thread-safe."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}

    def add(self, client: Client) -> None:
        with self._lock:
            if self._clients.get(client.client_id, client) is not client:
                raise ValueError(f"a client with client_id {client.client_id!r} is registered already; give each "
                                 "client its own client_id")
            self._clients[client.client_id] = client

    def remove(self, client: Client) -> None:
        with self._lock:
            if self._clients.get(client.client_id) is client:
                del self._clients[client.client_id]

    def describe(self) -> list[Metric]:
        """No fixed names: the families depend on the clients registered (so the registry checks none)."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            clients = list(self._clients.items())
        families: dict[str, Metric] = {}
        for client_id, client in clients:
            kind, descriptions = _kind(client)
            for key, value in client.metrics().items():
                name = f"{self._prefix}_{kind}_{key}"
                if key in LABELLED:
                    _add_entries(families, name, descriptions[key], key, client_id, value)
                else:
                    _add_value(families, name, descriptions[key], client_id, value)
        yield from families.values()


def _kind(client: Client) -> tuple[str, dict[str, str]]:
    if isinstance(client, Producer):
        return "producer", producer_metrics.METRICS
    return "consumer", consumer_metrics.METRICS


def _add_value(families: dict[str, Metric], name: str, description: str, client_id: str, value: float) -> None:
    """One sample of a plain metric: a counter for ``*_total``, else a gauge; ``*_ms`` in seconds."""
    if name.endswith("_total"):
        family = _family(families, name.removesuffix("_total"), description, ("client_id",), counter=True)
    elif name.endswith("_ms"):
        family = _family(families, name.removesuffix("_ms") + "_seconds", f"{description} (here in seconds)",
                         ("client_id",), counter=False)
        value /= 1000
    else:
        family = _family(families, name, description, ("client_id",), counter=False)
    family.add_metric([client_id], value)


def _add_entries(families: dict[str, Metric], name: str, description: str, key: str, client_id: str,
                 entries: dict[str, int]) -> None:
    """One labelled sample per entry of a dict-valued metric."""
    counter, labels = LABELLED[key]
    family = _family(families, name, description, ("client_id", *labels), counter)
    for entry, value in entries.items():
        family.add_metric([client_id, *_label_values(labels, entry)], value)


def _label_values(labels: tuple[str, ...], entry: str) -> list[str]:
    """The labels of a dict entry: the key itself, or a "topic-partition" key split at its last dash."""
    if labels == ("topic", "partition"):
        return entry.rsplit("-", 1)
    return [entry]


def _family(families: dict[str, Metric], name: str, description: str, labels: tuple[str, ...],
            counter: bool) -> Metric:
    family = families.get(name)
    if family is None:
        kind = CounterMetricFamily if counter else GaugeMetricFamily
        family = families[name] = kind(name, description, labels=list(labels))
    return family


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, ClientsCollector]] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def _collector(registry: CollectorRegistry, prefix: str) -> ClientsCollector:
    """The registry's collector for ``prefix``, registered on first use."""
    with _collectors_lock:
        by_prefix = _collectors.setdefault(registry, {})
        collector = by_prefix.get(prefix)
        if collector is None:
            collector = by_prefix[prefix] = ClientsCollector(prefix)
            registry.register(collector)
        return collector


def register(client: Client, registry: CollectorRegistry | None = None, prefix: str = DEFAULT_PREFIX) -> None:
    """Export ``client.metrics()`` (a Producer's or a Consumer's) on ``registry`` (default: prometheus_client's
    global one) at every scrape, as ``<prefix>_producer_*`` or ``<prefix>_consumer_*`` families labelled with
    its client_id. ValueError if another client with the same client_id is registered there under ``prefix``."""
    if not isinstance(client, (Producer, Consumer)):
        raise TypeError(f"client must be a Producer or a Consumer, got {type(client).__name__}")
    if not isinstance(prefix, str) or not METRIC_NAME.fullmatch(prefix):
        raise ValueError(f"prefix must start a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got {prefix!r}")
    _collector(REGISTRY if registry is None else registry, prefix).add(client)


def unregister(client: Client, registry: CollectorRegistry | None = None, prefix: str = DEFAULT_PREFIX) -> None:
    """Stop exporting ``client`` (do it when closing a client a long-running service replaces)."""
    _collector(REGISTRY if registry is None else registry, prefix).remove(client)
