"""The sender's producer id lookup, without brokers: an unstarted Sender is handed the controller's
answers, so that its failures are deterministic (a real cluster elects a new controller within 0.4 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from rill.client import protocol
from rill.client.accumulator import RecordAccumulator, RecordFuture
from rill.client.errors import NotControllerError, RequestTimeoutError, UnsupportedVersionError
from rill.client.metadata import ClusterMetadata
from rill.client.sender import Sender, SenderConfig
from rill.client.zmq_flavor import new_context


@pytest.fixture
def sender() -> Iterator[Sender]:
    context = new_context()
    accumulator = RecordAccumulator(batch_size=1024, linger_ms=0, buffer_memory=1 << 20, max_block_ms=1000,
                                    delivery_timeout_ms=60_000, wake_sender=lambda: None,
                                    on_batch_closed=lambda topic, partition: None)
    config = SenderConfig(acks=-1, compression=0, max_in_flight=5, max_request_size=1 << 20, request_timeout_ms=1000,
                          retry_backoff_ms=100, client_id="test", retry_backoff_max_ms=1000, enable_idempotence=True)
    yield Sender(config, accumulator, ClusterMetadata(["127.0.0.1:9"]), context, "inproc://unused")
    context.term()


def drained(sender: Sender) -> RecordFuture:
    """One record appended and drained into the sender's waiting list, as its loop would."""
    future = sender.accumulator.append("t", 0, 0, None, b"v", None, 1)
    sender._waiting += sender.accumulator.drain(time.monotonic(), True)[0]
    return future


def test_a_retriable_failure_backs_off_and_refreshes_metadata(sender):
    idempotence = sender._idempotence
    sender._on_producer_id(None, NotControllerError("the controller moved"))
    first_wait = idempotence.lookup_retry_at - time.monotonic()
    assert sender._metadata_stale and not idempotence.lookup_due(time.monotonic())
    sender._on_producer_id(protocol.InitProducerIdResponse(41, "not the controller", -1, -1), None)
    assert idempotence.lookup_failures == 2 and isinstance(idempotence.lookup_error, NotControllerError)
    assert 0.05 < first_wait < idempotence.lookup_retry_at - time.monotonic(), "the second wait is longer"
    sender._on_producer_id(protocol.InitProducerIdResponse(0, "", 7, 0), None)
    assert (idempotence.producer_id, idempotence.epoch, idempotence.lookup_failures) == (7, 0, 0)


def test_a_failure_that_is_not_retriable_fails_the_records_waiting_for_an_id(sender):
    future = drained(sender)
    sender._on_producer_id(None, UnsupportedVersionError("no InitProducerId on this broker"))
    assert isinstance(future.exception(0), UnsupportedVersionError)
    assert not sender._waiting


def test_a_record_without_an_id_at_its_delivery_timeout_names_the_lookups_last_error(sender):
    future = drained(sender)
    sender._on_producer_id(None, NotControllerError("the controller moved"))
    sender._expire(time.monotonic() + 61)
    error = future.exception(0)
    assert isinstance(error, RequestTimeoutError)
    assert "ran out after 0 attempts" in str(error) and "NotControllerError" in str(error)
