"""The schema registry on three brokers: it lives in the Raft metadata, so it survives a kill -9 of the
controller and a whole-cluster restart, every broker serves reads from its replica, and a schema id is
never handed out twice, whichever broker is controller.
"""

from __future__ import annotations

import signal

import pytest
from brokers import ClusterProcesses, wait_until
from rill.client import JsonSchemaSerializer, Producer
from rill.client.errors import RillError, SchemaValidationError
from rill.client.schema_registry import canonical_text
from rill.node.schema.registry_state import MAX_SCHEMA_BYTES

ORDER = {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}
WITH_NOTE = {**ORDER, "properties": {**ORDER["properties"], "note": {"type": "string"}}}


def largest_schema() -> dict:
    """A schema of exactly the 64 KiB the registry allows: its Raft command is bigger than one pysyncobj
    message (64 KiB), so followers receive it in chunks."""
    schema = {"type": "object", "properties": {f"field_{n:05}": {"type": "string"} for n in range(1_900)},
              "description": ""}
    schema["description"] = "x" * (MAX_SCHEMA_BYTES - len(canonical_text(schema).encode()))
    return schema


LARGE = largest_schema()


def registry_view(cluster: ClusterProcesses, node_id: int) -> dict | None:
    """What one broker serves from its replica: subject -> [(version, id, schema)]; None if it does not answer."""
    def ask() -> dict:
        with cluster.admin([node_id], request_timeout_ms=2_000) as admin:
            return {subject: [(found.version, found.id, found.schema)
                              for found in (admin.get_schema(subject, version)
                                            for version in admin.list_schema_versions(subject))]
                    for subject in admin.list_subjects()}

    try:
        return ask()
    except RillError:
        return None


def wait_for_views(cluster: ClusterProcesses, node_ids: list[int], expected: dict) -> None:
    for node_id in node_ids:
        wait_until(lambda node_id=node_id: registry_view(cluster, node_id) == expected, 30,
                   f"broker {node_id} to serve the registry {sorted(expected)}", 0.1)


def test_registry_survives_a_controller_kill_and_never_reuses_an_id(cluster: ClusterProcesses):
    with cluster.admin() as admin:
        first = admin.register_schema("orders-value", ORDER)
        second = admin.register_schema("orders-value", WITH_NOTE)
        scratch = admin.register_schema("scratch-value", {"type": "string", "title": "scratch"})
        admin.delete_schema("scratch-value", permanent=True)  # the highest id so far, now forgotten
    expected = {"orders-value": [(1, first.id, ORDER), (2, second.id, WITH_NOTE)]}
    wait_for_views(cluster, cluster.node_ids, expected)

    controller = cluster.controller_id()
    cluster.kill(controller, signal.SIGKILL)
    survivors = [node_id for node_id in cluster.node_ids if node_id != controller]
    cluster.wait_for_controller(not_in=[controller], node_ids=survivors)
    wait_for_views(cluster, survivors, expected)

    with cluster.admin(survivors) as admin:
        third = admin.register_schema("orders-value", {**WITH_NOTE, "title": "v3"})
        other = admin.register_schema("payments-value", {"type": "object", "title": "payment"})
    assert third.version == 3
    assert len({first.id, second.id, scratch.id, third.id, other.id}) == 5, "an id was handed out twice"
    assert min(third.id, other.id) > scratch.id, "the new controller reused an id"
    expected = {"orders-value": [*expected["orders-value"], (3, third.id, {**WITH_NOTE, "title": "v3"})],
                "payments-value": [(1, other.id, {"type": "object", "title": "payment"})]}
    wait_for_views(cluster, survivors, expected)

    cluster.start(controller)
    wait_for_views(cluster, [controller], expected)


@pytest.mark.cluster_settings(session_timeout_ms=3_000)
def test_registry_and_enforcement_survive_a_full_restart(cluster: ClusterProcesses):
    topic, subject = "orders", "orders-value"
    with cluster.admin() as admin:
        small = admin.register_schema(subject, ORDER)
        large = admin.register_schema("large-value", LARGE)
        admin.register_schema("gone-value", {"type": "boolean"})
        admin.delete_schema("gone-value")
        admin.create_topic(topic, replication_factor=3, config={"schema.subject": subject,
                                                                "schema.validation": True})
    expected = {subject: [(1, small.id, ORDER)], "large-value": [(1, large.id, LARGE)]}
    wait_for_views(cluster, cluster.node_ids, expected)

    cluster.stop_all()
    cluster.start_all()
    wait_for_views(cluster, cluster.node_ids, expected)
    cluster.wait_full_isr(topic)
    with cluster.admin() as admin:
        assert admin.get_schema_by_id(small.id).schema == ORDER
        with Producer(cluster.bootstrap, value_serializer=JsonSchemaSerializer(admin, subject)) as producer:
            assert producer.send(topic, {"order_id": 1}).result(30).offset == 0
        with Producer(cluster.bootstrap) as producer:
            with pytest.raises(SchemaValidationError, match="has no schema.id header"):
                producer.send(topic, b'{"order_id": 2}').result(30)
