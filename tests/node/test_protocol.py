"""The request/response protocol against a real broker: versions, pipelining, long poll, fetch limits."""

from __future__ import annotations

import pytest
import zmq
from rill.client import Producer, protocol
from rill.client.batch import decode_batch, iter_batches
from rill.client.network import NetworkClient


@pytest.fixture
def network():
    context = zmq.Context()
    client = NetworkClient(context, "protocol-test")
    yield client
    client.close()
    context.term()


def fetch_request(topic: str, offset: int, max_wait_ms: int = 0, min_bytes: int = 1, max_bytes: int = 1 << 20,
                  partition_max_bytes: int = 1 << 20) -> protocol.FetchRequest:
    return protocol.FetchRequest(max_wait_ms, min_bytes, max_bytes, [
        protocol.TopicFetch(topic, [protocol.PartitionFetch(0, offset, partition_max_bytes)])
    ])


def test_api_versions_lists_every_api(network, shared_broker):
    response = network.request(shared_broker.bootstrap, protocol.API_VERSIONS, protocol.ApiVersionsRequest(), 10_000)
    assert {api.api_key for api in response.apis} == set(protocol.APIS)


def test_many_requests_in_flight_on_one_connection(network, shared_broker, admin, topic_name):
    admin.create_topic(topic_name)
    network.request(shared_broker.bootstrap, protocol.API_VERSIONS, protocol.ApiVersionsRequest(), 10_000)  # connect
    answers: dict[int, object] = {}
    for number in range(50):
        api, body = ((protocol.METADATA, protocol.MetadataRequest([topic_name])) if number % 2
                     else (protocol.FETCH, fetch_request(topic_name, 0)))
        assert network.send(shared_broker.bootstrap, api, body,
                            lambda response, error, n=number: answers.__setitem__(n, (response, error)), 10_000)
    for _ in range(1_000):
        if len(answers) == 50:
            break
        network.poll(100)
    assert len(answers) == 50
    for number, (response, error) in answers.items():
        assert error is None
        expected = protocol.MetadataResponse if number % 2 else protocol.FetchResponse
        assert isinstance(response, expected)


def test_long_poll_returns_what_is_there_when_min_bytes_never_comes(network, shared_broker, admin, topic_name):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap) as producer:
        producer.send(topic_name, b"small").result(10)
    response = network.request(shared_broker.bootstrap, protocol.FETCH,
                                fetch_request(topic_name, 0, max_wait_ms=300, min_bytes=10**6), 10_000)
    answer = response.topics[0].partitions[0]
    assert answer.error_code == 0 and answer.high_watermark == 1
    assert [r.value for r in decode_batch(answer.records, topic_name, 0)] == [b"small"]


def test_fetch_limits_cut_at_whole_batches_but_return_at_least_one(network, shared_broker, admin, topic_name):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap, batch_size=1, linger_ms=0, compression="none",
                  max_in_flight_requests_per_connection=1) as producer:
        for number in range(20):
            producer.send(topic_name, b"%02d" % number + b"." * 200)
        producer.flush()
    whole = network.request(shared_broker.bootstrap, protocol.FETCH, fetch_request(topic_name, 0), 10_000)
    batches = list(iter_batches(whole.topics[0].partitions[0].records))
    assert sum(header.record_count for _, header in batches) == 20
    one_size = batches[0][1].size
    small = network.request(shared_broker.bootstrap, protocol.FETCH,
                            fetch_request(topic_name, 0, max_bytes=one_size * 3 + 10), 10_000)
    assert len(list(iter_batches(small.topics[0].partitions[0].records))) == 3
    tiny = network.request(shared_broker.bootstrap, protocol.FETCH,
                           fetch_request(topic_name, 5, partition_max_bytes=1), 10_000)
    records = tiny.topics[0].partitions[0].records
    assert len(list(iter_batches(records))) == 1
    assert decode_batch(records, topic_name, 0)[0].offset == 5


def test_list_offsets_earliest_latest_and_by_time(network, shared_broker, admin, topic_name):
    admin.create_topic(topic_name)
    with Producer(shared_broker.bootstrap) as producer:
        for number in range(10):
            producer.send(topic_name, b"v", timestamp_ms=10_000 + number * 100)

    def offset_for(timestamp: int) -> tuple[int, int]:
        request = protocol.ListOffsetsRequest([
            protocol.TopicListOffsets(topic_name, [protocol.PartitionListOffsets(0, timestamp)])])
        answer = network.request(shared_broker.bootstrap, protocol.LIST_OFFSETS, request, 10_000)
        result = answer.topics[0].partitions[0]
        return result.offset, result.timestamp

    assert offset_for(protocol.EARLIEST_TIMESTAMP)[0] == 0
    assert offset_for(protocol.LATEST_TIMESTAMP)[0] == 10
    assert offset_for(10_250) == (3, 10_300)
    assert offset_for(0) == (0, 10_000)
    assert offset_for(20_000) == (-1, -1)
