"""Fetch scheduling: a partition that has caught up is not fetched alone while another partition of its
leader still has a fetched response to decode. Such a fetch would be a long poll (nothing new to read)
and, one fetch per leader being in flight, would hold up the fetch that the other partition needs next
for up to fetch_max_wait_ms (consuming 4 partitions ran at half the speed of 1). Driven without a
broker: a fake network records the fetches and the test answers them."""

from __future__ import annotations

from fetcher_fakes import FakeMetadata, FakeNetwork
from rill.client import protocol
from rill.client.batch import encode_batch, patched_prefix
from rill.client.consumer_config import ConsumerConfig
from rill.client.consumer_metrics import ConsumerMetrics
from rill.client.fetcher import Fetcher
from rill.client.subscription_state import SubscriptionState
from rill.client.types import TopicPartition

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def batch_at(base_offset: int, count: int) -> bytes:
    data = encode_batch([b"v%d" % n for n in range(count)])
    return patched_prefix(base_offset, len(data) - 12, 0) + data[16:]


def answer(callback, high_watermarks: dict[int, int], records: dict[int, bytes]) -> None:
    partitions = [protocol.PartitionFetchResponse(p, 0, "", hw, 0, records.get(p, b""))
                  for p, hw in high_watermarks.items()]
    callback(protocol.FetchResponse([protocol.TopicFetchResponse("t", partitions)]), None)


def fetched(request: protocol.FetchRequest) -> dict[int, int]:
    return {p.partition: p.fetch_offset for topic in request.topics for p in topic.partitions}


def fetcher(network: FakeNetwork) -> tuple[Fetcher, list[int]]:
    """A fetcher of partitions 0 and 1 from offset 0, and the order collect visits them in."""
    config = ConsumerConfig(None, False, 5000, "earliest", 10, 45000, 3000, "range", None, None, 1, 500,
                            52428800, 1048576, 30000, True, "test")
    subscriptions = SubscriptionState()
    subscriptions.assign([P0, P1])
    for tp in (P0, P1):
        subscriptions.seek(tp, 0)
    order = [tp.partition for tp, _ in subscriptions.fetchable()]
    return Fetcher(network, FakeMetadata(), subscriptions, config, ConsumerMetrics()), order


def test_a_caught_up_partition_waits_for_the_one_with_a_response_to_decode():
    network = FakeNetwork()
    consumer, (first, second) = fetcher(network)
    consumer.send_fetches()
    assert [fetched(request) for request, _ in network.sent] == [{0: 0, 1: 0}]
    # The partition collect reads first gets all it has (caught up: 10 of 10); the other 10 of 30.
    answer(network.sent[0][1], {first: 10, second: 30}, {first: batch_at(0, 10), second: batch_at(0, 10)})
    assert [r.partition for r in consumer.collect(10)] == [first] * 10
    consumer.send_fetches()
    assert len(network.sent) == 1  # the first partition alone would be a long poll: it waits for the other
    assert [r.partition for r in consumer.collect(10)] == [second] * 10
    consumer.send_fetches()
    assert [fetched(request) for request, _ in network.sent[1:]] == [{0: 10, 1: 10}]


def test_caught_up_partitions_long_poll_when_nothing_is_left_to_decode():
    network = FakeNetwork()
    consumer, _ = fetcher(network)
    consumer.send_fetches()
    answer(network.sent[0][1], {0: 10, 1: 10}, {0: batch_at(0, 10), 1: batch_at(0, 10)})
    assert len(consumer.collect(100)) == 20
    consumer.send_fetches()
    assert [fetched(request) for request, _ in network.sent[1:]] == [{0: 10, 1: 10}]


def test_a_partition_with_more_to_read_is_fetched_at_once():
    network = FakeNetwork()
    consumer, (first, second) = fetcher(network)
    consumer.send_fetches()
    answer(network.sent[0][1], {first: 30, second: 30}, {first: batch_at(0, 10), second: batch_at(0, 10)})
    assert [r.partition for r in consumer.collect(10)] == [first] * 10
    consumer.send_fetches()
    assert [fetched(request) for request, _ in network.sent[1:]] == [{first: 10}]
