"""Admin calls with arguments of the wrong type fail at the call (TypeError), before any request.

Values of the right type are the broker's to judge (tests/node/test_bad_input.py); here only what
the wire cannot carry is refused by the client. After each refusal the Admin (and the cluster) work
on, and nothing was created.
"""

from __future__ import annotations

import pytest
from rill.client import Admin
from rill.client.errors import (
    InvalidConfigError,
    InvalidGroupIdError,
    InvalidPartitionsError,
)


@pytest.mark.parametrize("arguments", [
    {"bootstrap": None}, {"bootstrap": ["127.0.0.1:9092"]}, {"bootstrap": "host:\u0661\u0662"},
    {"request_timeout_ms": "1000"}, {"request_timeout_ms": 0}, {"request_timeout_ms": 1.5},
    {"request_timeout_ms": True}, {"client_id": 7},
])
def test_bad_admin_settings(shared_broker, arguments):
    settings = {"bootstrap": shared_broker.bootstrap, **arguments}
    with pytest.raises(InvalidConfigError):
        Admin(settings.pop("bootstrap"), **settings)


@pytest.mark.parametrize("call, error", [
    (lambda admin, topic: admin.create_topic(5), TypeError),
    (lambda admin, topic: admin.create_topic(None), TypeError),
    (lambda admin, topic: admin.create_topic(topic, partitions="3"), TypeError),
    (lambda admin, topic: admin.create_topic(topic, partitions=True), TypeError),
    (lambda admin, topic: admin.create_topic(topic, partitions=2.0), TypeError),
    (lambda admin, topic: admin.create_topic(topic, partitions=2**40), InvalidPartitionsError),
    (lambda admin, topic: admin.create_topic(topic, replication_factor="1"), TypeError),
    (lambda admin, topic: admin.create_topic(topic, config=[("retention.ms", "1")]), TypeError),
    (lambda admin, topic: admin.create_topic(topic, config={"retention.ms": None}), TypeError),
    (lambda admin, topic: admin.create_topic(topic, config={"retention.ms": [1]}), TypeError),
    (lambda admin, topic: admin.create_topic(topic, config={1: "x"}), TypeError),
    (lambda admin, topic: admin.describe_topic(None), TypeError),
    (lambda admin, topic: admin.describe_topic([topic]), TypeError),
    (lambda admin, topic: admin.delete_topic(b"name"), TypeError),
    (lambda admin, topic: admin.describe_group(5), InvalidGroupIdError),
    (lambda admin, topic: admin.delete_group(None), InvalidGroupIdError),
    (lambda admin, topic: admin.reset_offsets("g", 5, to_earliest=True), TypeError),
    (lambda admin, topic: admin.reset_offsets("g", topic, to_earliest=True, partitions="0"), TypeError),
    (lambda admin, topic: admin.reset_offsets("g", topic, to_earliest=True, partitions=[0.5]), TypeError),
    (lambda admin, topic: admin.reset_offsets("g", topic, to_earliest="yes"), InvalidConfigError),
    (lambda admin, topic: admin.reset_offsets("g", topic, to_latest=1), InvalidConfigError),
    (lambda admin, topic: admin.reset_offsets("g", topic, to_datetime=12), InvalidConfigError),
])
def test_wrong_types_fail_at_the_call_and_create_nothing(admin, topic_name, call, error):
    with pytest.raises(error):
        call(admin, topic_name)
    assert topic_name not in admin.list_topics()
    admin.create_topic(topic_name, partitions=1)
    assert len(admin.describe_topic(topic_name).partitions) == 1


def test_config_values_of_every_accepted_type(admin, topic_name):
    admin.create_topic(topic_name, config={"retention.ms": 60_000, "unclean.leader.election.enable": True,
                                           "cleanup.policy": "delete"})
    config = admin.describe_topic(topic_name).config
    assert (config["retention.ms"], config["unclean.leader.election.enable"]) == ("60000", "true")
