"""The bulk API's fast paths, without a broker: what they build must be what the general paths build.

- A send_many batch of values only is built from one join of prebuilt pieces
  (batch.values_payload) instead of record lists: its bytes are encode_batch's.
- Length columns without nulls are checked by a scan of sign bytes
  (int_columns.has_negative) instead of min and count: same answers, same errors.
- The consumer sends a partition's next fetch before it decodes a response (when
  the broker has more), so the broker reads while the client decodes; a caught-up
  partition's long poll still waits until after the decode.
"""

from __future__ import annotations

from array import array

import pytest
from fetcher_fakes import FakeMetadata, FakeNetwork
from rill.client import fetcher as fetcher_module
from rill.client import protocol
from rill.client.batch import (
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    _column_bytes,
    encode_batch,
    encode_batch_of_payload,
    patched_prefix,
    values_payload,
)
from rill.client.consumer_config import ConsumerConfig
from rill.client.consumer_metrics import ConsumerMetrics
from rill.client.errors import CorruptRecordError
from rill.client.fetcher import Fetcher
from rill.client.int_columns import has_negative
from rill.client.subscription_state import SubscriptionState
from rill.client.types import TopicPartition

TP = TopicPartition("t", 0)


@pytest.mark.parametrize("compression", [COMPRESSION_NONE, COMPRESSION_LZ4])
def test_a_values_payload_batch_is_the_batch_encode_batch_builds(compression):
    values = [b"value-%d" % number * (number % 5 + 1) for number in range(300)] + [b""]
    timestamp = 1_764_000_000_123
    payload = values_payload(values, list(map(len, values)))
    built = encode_batch_of_payload(payload, len(values), timestamp, timestamp, compression, 7, 1, 42)
    assert built == encode_batch(values, None, [timestamp] * len(values), None, compression, 7, 1, 42)


@pytest.mark.parametrize("typecode", ["i", "q"])
def test_has_negative_reads_the_sign_of_every_item(typecode):
    assert not has_negative(array(typecode)) and not has_negative(array(typecode, [0, 1, 2**31 - 1]))
    for position in range(5):
        items = array(typecode, [100] * 5)
        items[position] = -1
        assert has_negative(items)


def test_column_bytes_counts_nulls_and_refuses_negative_lengths():
    assert _column_bytes(array("i", [3, 4, 5])) == 12 and _column_bytes(array("i")) == 0
    assert _column_bytes(array("i", [3, -1, 5])) == 8
    with pytest.raises(CorruptRecordError, match="negative length"):
        _column_bytes(array("i", [3, -2, 5]))


def one_partition_fetcher(network: FakeNetwork) -> Fetcher:
    config = ConsumerConfig(None, False, 5000, "earliest", 10_000, 45000, 3000, "range", None, None, 1, 500,
                            52428800, 1048576, 30000, True, "test")
    subscriptions = SubscriptionState()
    subscriptions.assign([TP])
    subscriptions.seek(TP, 0)
    return Fetcher(network, FakeMetadata(), subscriptions, config, ConsumerMetrics())


def answer(callback, high_watermark: int, count: int) -> None:
    data = encode_batch([b"v%d" % n for n in range(count)])
    records = patched_prefix(0, len(data) - 12, 0) + data[16:]
    partitions = [protocol.PartitionFetchResponse(0, 0, "", high_watermark, 0, records)]
    callback(protocol.FetchResponse([protocol.TopicFetchResponse("t", partitions)]), None)


def fetch_offsets(network: FakeNetwork) -> list[int]:
    return [p.fetch_offset for request, _ in network.sent for topic in request.topics for p in topic.partitions]


@pytest.mark.parametrize("in_columns", [True, False])
def test_the_next_fetch_goes_out_before_a_response_is_decoded(monkeypatch, in_columns):
    network = FakeNetwork()
    consumer = one_partition_fetcher(network)
    fetches_at_decode: list[int] = []
    name = "decode_columns" if in_columns else "decode_batch"
    decode = getattr(fetcher_module, name)

    def watched(*args, **kwargs):
        fetches_at_decode.append(len(network.sent))
        return decode(*args, **kwargs)

    monkeypatch.setattr(fetcher_module, name, watched)
    consumer.send_fetches()
    answer(network.sent[0][1], high_watermark=1000, count=10)
    returned = consumer.collect_columns(100) if in_columns else consumer.collect(100)
    assert (sum(map(len, returned)) if in_columns else len(returned)) == 10
    assert fetches_at_decode == [2] and fetch_offsets(network) == [0, 10]


def test_a_caught_up_partition_long_polls_only_after_the_decode():
    network = FakeNetwork()
    consumer = one_partition_fetcher(network)
    consumer.send_fetches()
    answer(network.sent[0][1], high_watermark=10, count=10)
    assert sum(map(len, consumer.collect_columns(100))) == 10
    assert len(network.sent) == 1
    consumer.send_fetches()
    assert fetch_offsets(network) == [0, 10]
