"""Producer.metrics(), Consumer.metrics() and their Prometheus exporter, against a real broker.

The counters must match what the test did exactly (records, commits, errors by type, lag); rates,
averages and latencies only need to be there (positive where something happened). The window arithmetic
is checked alone with explicit clock values.
"""

from __future__ import annotations

import threading

import pytest
from brokers import wait_until
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rill.client import Consumer, Producer, TopicPartition, prometheus
from rill.client.client_metrics import WINDOW_S, WindowedStat
from rill.client.consumer_metrics import METRICS as CONSUMER_METRICS
from rill.client.errors import NotEnoughReplicasError
from rill.client.producer_metrics import METRICS as PRODUCER_METRICS

RECORDS = 2_000
TIMEOUT_S = 30


# ---- the window ------------------------------------------------------------------------------


def test_a_window_gives_rate_average_and_maximum_and_forgets_old_values():
    stat = WindowedStat(now=100.0)
    for now, value in ((100.2, 10), (100.7, 30), (103.5, 20)):
        stat.record(value, now)
    summary = stat.summary(104.0)
    assert (summary.count, summary.total, summary.maximum, summary.average) == (3, 60, 30, 20)
    assert summary.rate == pytest.approx(60 / 4.0), "per second since the stat began, 4 s ago"
    later = stat.summary(100.0 + WINDOW_S + 2.2)
    assert (later.count, later.total, later.maximum) == (1, 20, 20), "the values of seconds 100 have left the window"
    assert later.rate == pytest.approx(20 / (WINDOW_S - 1 + 0.2)), "per second over the window"
    assert stat.summary(200.0) == (0, 0.0, 0.0, 0.0)


def test_a_young_stat_reports_its_rate_over_at_least_a_second():
    stat = WindowedStat(now=50.0)
    stat.record(500, 50.01)
    assert stat.summary(50.02).rate == 500


# ---- the producer ------------------------------------------------------------------------------


def test_producer_metrics_count_what_was_sent(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    with Producer(shared_broker.bootstrap, linger_ms=1, batch_size=16_384, buffer_memory=8 << 20) as producer:
        for number in range(RECORDS):
            producer.send(topic_name, b"x" * 100, key=str(number).encode())
        producer.flush(timeout=TIMEOUT_S)
        metrics = producer.metrics()
    assert set(metrics) == set(PRODUCER_METRICS), "every key is documented"
    assert metrics["records_sent_total"] == RECORDS
    assert metrics["bytes_sent_total"] > 0 and metrics["byte_send_rate"] > 0 and metrics["record_send_rate"] > 0
    assert metrics["batch_records_avg"] > 1 and metrics["batch_size_avg"] > 100
    assert metrics["requests_total"] >= 1
    assert 0 < metrics["request_latency_avg_ms"] <= metrics["request_latency_max_ms"]
    assert metrics["record_retries_total"] == metrics["record_errors_total"] == 0
    assert metrics["record_errors_by_type"] == {}
    assert metrics["buffer_used_bytes"] == metrics["records_queued"] == metrics["records_in_flight"] == 0
    assert (metrics["buffer_memory_bytes"], metrics["buffer_use_ratio"]) == (8 << 20, 0)
    assert all(type(value) in (int, float) for key, value in metrics.items() if key != "record_errors_by_type")


def test_producer_metrics_count_retries_and_errors_by_type(admin, shared_broker, topic_name):
    """min.insync.replicas=2 on one broker: acks=all produces are refused with the retriable
    NotEnoughReplicasError until delivery_timeout_ms, then the records fail with it."""
    admin.create_topic(topic_name, config={"min.insync.replicas": 2})
    with Producer(shared_broker.bootstrap, linger_ms=0, request_timeout_ms=1_000, delivery_timeout_ms=2_000,
                  retry_backoff_ms=20, retry_backoff_max_ms=200) as producer:
        futures = [producer.send(topic_name, b"never stored", partition=0) for _ in range(3)]
        queued = producer.metrics()
        for future in futures:
            with pytest.raises(NotEnoughReplicasError):
                future.result(timeout=TIMEOUT_S)
        metrics = producer.metrics()
    assert queued["records_queued"] + queued["records_in_flight"] + queued["record_errors_total"] == 3
    assert queued["buffer_used_bytes"] > 0 or queued["record_errors_total"] == 3
    assert metrics["record_errors_by_type"] == {"NotEnoughReplicasError": 3}
    assert metrics["record_errors_total"] == 3 and metrics["records_sent_total"] == 0
    assert metrics["record_retries_total"] >= 3, "each record was retried before the delivery timeout"
    assert metrics["request_latency_max_ms"] > 0, "refusals are answers: their latency counts"
    assert metrics["buffer_used_bytes"] == metrics["records_queued"] == metrics["records_in_flight"] == 0


def test_producer_metrics_read_from_other_threads_while_sending(shared_broker, admin, topic_name):
    admin.create_topic(topic_name, partitions=3)
    seen: list[list[int]] = [[], []]  # records_sent_total as each reader saw it
    sending = threading.Event()
    sending.set()
    with Producer(shared_broker.bootstrap, linger_ms=0, batch_size=2_048) as producer:

        def read_metrics(totals: list[int]) -> None:
            while sending.is_set():
                totals.append(producer.metrics()["records_sent_total"])

        readers = [threading.Thread(target=read_metrics, args=(totals,)) for totals in seen]
        for reader in readers:
            reader.start()
        try:
            for _ in range(10 * RECORDS):
                producer.send(topic_name, b"y" * 50)
            producer.flush(timeout=TIMEOUT_S)
        finally:
            sending.clear()
            for reader in readers:
                reader.join(TIMEOUT_S)
        final = producer.metrics()
    assert final["records_sent_total"] == 10 * RECORDS
    for totals in seen:
        assert totals and totals == sorted(totals) and totals[-1] <= 10 * RECORDS, "each reader sees it only grow"


# ---- the consumer ------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, count: int, partitions: int = 1) -> int:
    """Send ``count`` records round-robin over the partitions; the bytes of the batches sent."""
    with Producer(bootstrap, linger_ms=1) as producer:
        for number in range(count):
            producer.send(topic, b"z" * 100, partition=number % partitions)
        producer.flush(timeout=TIMEOUT_S)
        return producer.metrics()["bytes_sent_total"]


def test_consumer_metrics_count_what_was_consumed_and_committed(admin, shared_broker, topic_name):
    admin.create_topic(topic_name, partitions=2)
    sent_bytes = produce(shared_broker.bootstrap, topic_name, RECORDS, partitions=2)
    with Consumer(shared_broker.bootstrap, group_id=topic_name, topics=[topic_name], auto_offset_reset="earliest",
                  enable_auto_commit=False) as consumer:
        consumed: list = []
        wait_until(lambda: consumed.extend(consumer.poll(0.2)) or len(consumed) >= RECORDS, TIMEOUT_S,
                   "every record consumed")
        wait_until(lambda: consumer.poll(0.05) == [] and len(consumer.metrics()["records_lag"]) == 2, TIMEOUT_S,
                   "both partitions' lag known")
        consumer.commit()
        metrics = consumer.metrics()
    assert set(metrics) == set(CONSUMER_METRICS), "every key is documented"
    assert len(consumed) == metrics["records_consumed_total"] == RECORDS
    assert metrics["bytes_consumed_total"] == sent_bytes, "the consumer fetched the batches the producer sent"
    assert metrics["bytes_consumed_rate"] > 0
    assert metrics["records_consumed_rate"] > 0
    assert metrics["fetch_requests_total"] >= 2
    assert 0 < metrics["fetch_latency_avg_ms"] <= metrics["fetch_latency_max_ms"]
    assert metrics["records_lag"] == {f"{topic_name}-0": 0, f"{topic_name}-1": 0}
    assert metrics["records_lag_max"] == 0
    assert (metrics["commits_total"], metrics["commit_errors_total"]) == (1, 0)
    assert 0 < metrics["commit_latency_avg_ms"] <= metrics["commit_latency_max_ms"]


def test_consumer_lag_is_the_high_watermark_minus_the_position(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    produce(shared_broker.bootstrap, topic_name, 100)
    with Consumer(shared_broker.bootstrap, max_poll_records=10, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic_name, 0)])
        first = wait_until(lambda: consumer.poll(0.2), TIMEOUT_S, "the first records")
        assert len(first) == 10
        assert consumer.metrics()["records_lag"] == {f"{topic_name}-0": 90}
        assert consumer.metrics()["records_lag_max"] == 90
        consumer.assign([])
        consumer.poll(0)
        assert consumer.metrics()["records_lag"] == {}, "an unassigned partition has no lag"


# ---- the Prometheus exporter -----------------------------------------------------------------------


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser: (name, labels) -> value."""
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def exported_name(prefix: str, key: str) -> str:
    return f"{prefix}_{key.removesuffix('_ms')}_seconds" if key.endswith("_ms") else f"{prefix}_{key}"


def check_exported(samples: dict, prefix: str, client_id: str, metrics: dict) -> None:
    """Each metric of the snapshot is in the scrape with the same value (seconds for ms; rates drift a little
    between the two reads, as time passes)."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            continue
        exported = samples[(exported_name(prefix, key), (("client_id", client_id),))]
        if key.endswith("_rate"):
            assert exported == pytest.approx(value, rel=0.2), key
        else:
            assert exported == pytest.approx(value / 1000 if key.endswith("_ms") else value), key


def test_prometheus_exporter_carries_the_same_numbers(admin, shared_broker, topic_name):
    admin.create_topic(topic_name)
    refusing = f"{topic_name}-refusing"
    admin.create_topic(refusing, config={"min.insync.replicas": 2})
    registry = CollectorRegistry()
    with Producer(shared_broker.bootstrap, linger_ms=1, delivery_timeout_ms=2_000, request_timeout_ms=1_000,
                  client_id="orders-producer") as producer, \
            Consumer(shared_broker.bootstrap, auto_offset_reset="earliest", client_id="orders-consumer") as consumer:
        prometheus.register(producer, registry)
        prometheus.register(consumer, registry, prefix="rill_client")
        for _ in range(RECORDS):
            producer.send(topic_name, b"p" * 80)
        refused = producer.send(refusing, b"never stored")
        producer.flush(timeout=TIMEOUT_S)
        assert isinstance(refused.exception(0), NotEnoughReplicasError)
        consumer.assign([TopicPartition(topic_name, 0)])
        consumed: list = []
        wait_until(lambda: consumed.extend(consumer.poll(0.2)) or len(consumed) >= RECORDS, TIMEOUT_S,
                   "every record consumed")
        producer_metrics, consumer_metrics = producer.metrics(), consumer.metrics()
        samples = scrape(registry)
    check_exported(samples, "rill_client_producer", "orders-producer", producer_metrics)
    check_exported(samples, "rill_client_consumer", "orders-consumer", consumer_metrics)
    assert samples[("rill_client_producer_records_sent_total", (("client_id", "orders-producer"),))] == RECORDS
    assert samples[("rill_client_producer_record_errors_by_type_total",
                    (("client_id", "orders-producer"), ("error", "NotEnoughReplicasError")))] == 1
    lag_labels = (("client_id", "orders-consumer"), ("partition", "0"), ("topic", topic_name))
    assert samples[("rill_client_consumer_records_lag", lag_labels)] == consumer_metrics["records_lag"][
        f"{topic_name}-0"] == 0


def test_prometheus_register_refuses_what_it_cannot_export(shared_broker):
    registry = CollectorRegistry()
    with Producer(shared_broker.bootstrap) as first, Producer(shared_broker.bootstrap) as second:
        prometheus.register(first, registry)
        with pytest.raises(ValueError, match="client_id 'rill-producer' is registered already"):
            prometheus.register(second, registry)
        prometheus.register(second, registry, prefix="other")
        with pytest.raises(ValueError, match="prefix"):
            prometheus.register(first, registry, prefix="bad prefix")
        with pytest.raises(TypeError, match="Producer or a Consumer"):
            prometheus.register(object(), registry)
        prometheus.unregister(first, registry)
        prometheus.register(second, registry)
        samples = scrape(registry)
    assert ("rill_client_producer_records_sent_total", (("client_id", "rill-producer"),)) in samples
    assert ("other_producer_records_sent_total", (("client_id", "rill-producer"),)) in samples
