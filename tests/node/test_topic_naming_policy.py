"""The cluster-wide topic naming policy (node config ``topic_naming_policy``): enforced by the controller
at create with a message naming the policy; dead-letter topics of conforming names and internal topics pass;
a policy that is not a regular expression stops the broker at start."""

from __future__ import annotations

import pytest
from brokers import BrokerProcess
from rill.client import Admin, Consumer, Producer
from rill.client.errors import InvalidConfigError, InvalidTopicError
from rill.node.config import load_node_config

POLICY = r"[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*\.[a-z][a-z0-9_-]*"  # <domain>.<entity>.<event>


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    broker = BrokerProcess(tmp_path_factory.mktemp("naming"), settings={"topic_naming_policy": POLICY}).start()
    yield broker
    broker.stop()


def test_a_name_that_follows_the_policy_and_its_dead_letter_topic_are_created(broker):
    with Admin(broker.bootstrap) as admin:
        admin.create_topic("orders.order.created", partitions=2)
        admin.create_topic("orders.order.created.dlq", partitions=2)
        assert {"orders.order.created", "orders.order.created.dlq"} <= set(admin.list_topics())


@pytest.mark.parametrize("name", ["Orders", "orders", "orders.order", "orders.order.created.extra",
                                  "orders.dlq", "orders.order.created.dlq.dlq"])
def test_a_name_that_breaks_the_policy_is_refused_naming_it(broker, name):
    with Admin(broker.bootstrap) as admin:
        with pytest.raises(InvalidTopicError, match="naming policy") as refused:
            admin.create_topic(name)
        assert POLICY in str(refused.value)
        assert name not in admin.list_topics()


def test_the_internal_offsets_topic_is_exempt(broker):
    """The group coordinator creates __consumer_offsets on first use; a policy must not stop it."""
    with Admin(broker.bootstrap) as admin:
        admin.create_topic("orders.order.paid")
    with Producer(broker.bootstrap) as producer:
        producer.send("orders.order.paid", b"1").result(10)
    with Consumer(broker.bootstrap, group_id="billing", topics=["orders.order.paid"],
                  auto_offset_reset="earliest", enable_auto_commit=False) as consumer:
        records = []
        for _ in range(100):
            records += consumer.poll(0.2)
            if records:
                break
        consumer.commit()
        assert [record.value for record in records] == [b"1"]
    with Admin(broker.bootstrap) as admin:
        assert "__consumer_offsets" in admin.list_topics()


def test_a_policy_that_is_not_a_regular_expression_is_refused_at_start(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('topic_naming_policy = "orders.("\n[[nodes]]\nid = 1\nport = 19092\n')
    with pytest.raises(InvalidConfigError, match="topic_naming_policy 'orders.\\(' is not a valid regular"):
        load_node_config(path, {"node_id": 1})
