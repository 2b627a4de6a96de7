"""One topic name rule (client/topic_names.py) for the client and the brokers, topic configs validated by
building what brokers apply, and internal topics that only the brokers create and delete."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import zmq
from brokers import BrokerProcess, wait_until
from rill.client import Admin, protocol
from rill.client.arguments import check_topic
from rill.client.errors import (
    ClusterAuthorizationError,
    InvalidConfigError,
    InvalidTopicError,
)
from rill.client.network import NetworkClient
from rill.client.topic_names import colliding_name, topic_name_problem
from rill.node.coordinator.offset_records import OFFSETS_PARTITIONS
from rill.node.metadata.topic_config import topic_settings, validate_topic_config

ILLEGAL_NAMES = ["", "trailing-newline\n", "x" * 250, ".", "..", "tøpic", "has space", "slash/name", "tab\t",
                 "٣"]
LEGAL_NAMES = ["a", "x" * 249, "...", "a.b_c-D9", "__not_internal"]


@pytest.mark.parametrize("name", ILLEGAL_NAMES)
def test_illegal_names_have_a_problem(name):
    assert topic_name_problem(name) is not None


@pytest.mark.parametrize("name", LEGAL_NAMES)
def test_legal_names_have_none(name):
    assert topic_name_problem(name) is None


@pytest.mark.parametrize("name", ILLEGAL_NAMES)
def test_client_refuses_what_the_brokers_refuse(name):
    with pytest.raises(ValueError):
        check_topic(name)


def test_collision_treats_dot_and_underscore_alike():
    assert colliding_name("a.b", ["a_b", "c"]) == "a_b"
    assert colliding_name("a_b", ["a.b"]) == "a.b"
    assert colliding_name("a.b", ["a.b", "a-b"]) is None


@pytest.mark.parametrize("config", [{"segment.bytes": "4294967296"}, {"segment.index.bytes": "8"},
                                    {"segment.bytes": "2147483648"}, {"max.message.bytes": "4294967296"},
                                    {"retention.ms": "١٠٠"}])
def test_validation_refuses_what_brokers_cannot_apply(config):
    with pytest.raises(InvalidConfigError):
        validate_topic_config(config)


def test_validated_config_is_what_brokers_apply():
    full = validate_topic_config({"segment.bytes": 2**31 - 1, "segment.index.bytes": "12", "min.insync.replicas": 2})
    settings = topic_settings(full)
    assert (settings.log.segment_bytes, settings.log.segment_index_bytes) == (2**31 - 1, 12)
    assert settings.min_insync_replicas == 2


def test_unknown_topic_default_is_a_config_error_not_a_crash():
    with pytest.raises(InvalidConfigError, match="did you mean 'retention.ms'"):
        validate_topic_config({}, {"retention.msec": "5"})


# ---- against a broker ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{"segment.bytes": 4294967296}, {"segment.index.bytes": 8}])
def test_broker_refuses_a_config_it_could_not_apply(admin, topic_name, config):
    with pytest.raises(InvalidConfigError):
        admin.create_topic(topic_name, config=config)
    assert topic_name not in admin.list_topics()


@pytest.mark.parametrize("name", ILLEGAL_NAMES)
def test_broker_refuses_illegal_names(admin, name):
    with pytest.raises(InvalidTopicError):
        admin.create_topic(name)
    assert name not in admin.list_topics()


def test_broker_accepts_the_longest_name(admin, topic_name):
    name = (topic_name + "-" + "x" * 249)[:249]
    admin.create_topic(name)
    assert name in admin.list_topics()


def test_broker_refuses_a_name_colliding_on_dot_and_underscore(admin, topic_name):
    admin.create_topic(f"{topic_name}.v1")
    with pytest.raises(InvalidTopicError, match="collides with existing topic"):
        admin.create_topic(f"{topic_name}_v1")
    assert f"{topic_name}_v1" not in admin.list_topics()


def test_clients_neither_create_nor_delete_internal_topics(broker: BrokerProcess):
    """A fresh broker: a client's __consumer_offsets is refused (its partition count would break group
    coordination), so is a name colliding with it; the coordinator still creates it, and a client cannot
    delete it (every committed offset would go)."""
    with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
        for name in (protocol.OFFSETS_TOPIC, "__consumer.offsets"):
            with pytest.raises(InvalidTopicError):
                admin.create_topic(name, partitions=1)
        assert protocol.OFFSETS_TOPIC not in admin.list_topics()
        find_coordinator(broker.bootstrap)
        wait_until(lambda: protocol.OFFSETS_TOPIC in admin.list_topics(), 30, "the coordinator's offsets topic")
        assert len(admin.describe_topic(protocol.OFFSETS_TOPIC).partitions) == OFFSETS_PARTITIONS
        with pytest.raises(InvalidTopicError):
            admin.delete_topic(protocol.OFFSETS_TOPIC)
        assert protocol.OFFSETS_TOPIC in admin.list_topics()


def test_internal_creation_is_refused_on_the_client_port(shared_broker):
    """The brokers' path (CREATE_INTERNAL_TOPIC) is broker-only: a client sending it is refused."""
    request = protocol.CreateTopicRequest(protocol.OFFSETS_TOPIC, 1, 1, {}, 5_000)
    with network_client() as client:
        with pytest.raises(ClusterAuthorizationError):
            client.request(shared_broker.bootstrap, protocol.CREATE_INTERNAL_TOPIC, request, 10_000)


@contextmanager
def network_client() -> Iterator[NetworkClient]:
    context = zmq.Context()
    client = NetworkClient(context, "topic-rules-test")
    try:
        yield client
    finally:
        client.close()
        context.term()


def find_coordinator(bootstrap: str) -> None:
    """Ask for a group's coordinator until there is one: the first ask makes the brokers create the offsets
    topic, through their internal path."""
    with network_client() as client:
        def found() -> bool:
            request = protocol.FindCoordinatorRequest("topic-rules-group")
            return client.request(bootstrap, protocol.FIND_COORDINATOR, request, 5_000).error_code == 0

        wait_until(found, 30, "the group coordinator")
