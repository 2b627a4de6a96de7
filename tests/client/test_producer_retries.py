"""Retries as Kafka's producer does them: exponential backoff with jitter (KIP-580), retriable errors
retried until delivery_timeout_ms and then failed with the last error, other errors failed at once."""

from __future__ import annotations

import random
import re
import signal

import pytest
from rill.client import Admin, Producer
from rill.client.errors import NotEnoughReplicasError, RecordTooLargeError, RequestTimeoutError
from rill.client.retry_backoff import JITTER, RetryBackoff

# ---- the backoff -----------------------------------------------------------------------------


def test_backoff_doubles_per_retry_up_to_the_maximum():
    backoff = RetryBackoff(100, 1000, uniform=lambda low, high: 1.0)
    assert [backoff.delay_ms(retry) for retry in range(1, 8)] == [100, 200, 400, 800, 1000, 1000, 1000]
    assert backoff.delay_ms(10_000) == 1000, "a long outage does not overflow"
    assert RetryBackoff(0, 0, uniform=lambda low, high: 1.0).delay_ms(5) == 0


def test_backoff_jitter_stays_within_twenty_percent_each_way():
    draws = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return random.Random(len(draws)).uniform(low, high)

    backoff = RetryBackoff(100, 1000, uniform=uniform)
    for retry in range(1, 8):
        capped = min(100 * 2 ** (retry - 1), 1000)
        delays = [backoff.delay_ms(retry) for _ in range(200)]
        assert all(capped * (1 - JITTER) <= delay <= capped * (1 + JITTER) for delay in delays)
        assert len(set(delays)) > 100, "the delays are spread, not one value"
    assert set(draws) == {(1 - JITTER, 1 + JITTER)}
    extremes = RetryBackoff(100, 1000, uniform=lambda low, high: high)
    assert extremes.delay_ms(4) == pytest.approx(960) and extremes.delay_ms(9) == pytest.approx(1200)


# ---- against a broker ------------------------------------------------------------------------


def test_delivery_timeout_fails_with_the_last_error_after_retrying(admin, shared_broker, topic_name):
    """min.insync.replicas=2 on a one-broker cluster: every acks=all produce is refused with the retriable
    NotEnoughReplicasError, so the record is retried until delivery_timeout_ms and then fails with it."""
    admin.create_topic(topic_name, config={"min.insync.replicas": 2})
    with Producer(shared_broker.bootstrap, linger_ms=0, request_timeout_ms=1_000, delivery_timeout_ms=2_000,
                  retry_backoff_ms=20, retry_backoff_max_ms=200) as producer:
        future = producer.send(topic_name, b"never stored")
        with pytest.raises(NotEnoughReplicasError) as failure:
            future.result(timeout=30)
    match = re.search(r"delivery_timeout_ms ran out after (\d+) attempts", str(failure.value))
    assert match, str(failure.value)
    assert int(match.group(1)) >= 2, "it was retried before the delivery timeout ran out"


def test_an_error_that_is_not_retriable_fails_at_once(admin, shared_broker, topic_name):
    """RecordTooLargeError from the broker (the topic's max.message.bytes) fails the record on its first
    answer, long before its delivery timeout, and records after it are delivered."""
    admin.create_topic(topic_name, config={"max.message.bytes": 2_000})
    with Producer(shared_broker.bootstrap, linger_ms=0, compression="none", delivery_timeout_ms=120_000) as producer:
        too_large = producer.send(topic_name, b"x" * 5_000)
        with pytest.raises(RecordTooLargeError) as failure:
            too_large.result(timeout=30)
        assert "ran out" not in str(failure.value)
        assert producer.send(topic_name, b"small").result(timeout=30).offset == 0


def test_a_record_that_never_got_an_answer_fails_with_request_timeout(broker):
    """A stopped (SIGSTOP) broker answers nothing: once delivery_timeout_ms runs out, the record fails with
    RequestTimeoutError; after SIGCONT the producer delivers again."""
    with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
        admin.create_topic("silent")
    with Producer(broker.bootstrap, linger_ms=0, request_timeout_ms=1_000, delivery_timeout_ms=1_000) as producer:
        producer.send("silent", b"warm-up").result(timeout=30)  # producer id, metadata and connection first
        broker.send_signal(signal.SIGSTOP)
        try:
            future = producer.send("silent", b"unanswered")
            with pytest.raises(RequestTimeoutError) as failure:
                future.result(timeout=30)
        finally:
            broker.send_signal(signal.SIGCONT)
        assert "delivery_timeout_ms ran out after 1 attempt" in str(failure.value)
        assert producer.send("silent", b"after").result(timeout=30).offset >= 1
