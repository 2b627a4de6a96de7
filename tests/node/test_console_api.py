"""The web console's JSON API against real brokers, over plain HTTP (urllib).

One broker holds a topic with JSON, text, binary and huge (900 KB of random
bytes) records, a group with committed offsets and a schema subject. The
API answers what the Admin says (lag, partitions), pages records newest
first by default, shows binary as hex and cuts large values to a preview
with their full size; unknown things are 404 and bad queries 400, each
with a JSON message, never a 500. A three-node cluster with one node down
shows that node as not answering and the others' partitions with their
leaders' figures.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import BrokerProcess, ClusterProcesses, wait_until
from rill.client import Admin, Producer
from rill.node.http.message_browser import MAX_LIMIT
from rill.node.http.value_preview import PREVIEW_CHARS

TOPIC = "console-api"
GROUP = "console-api-group"
SUBJECT = "console-api-value"
SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}}
JSON_RECORDS = 10
BINARY = bytes(range(256))
HUGE = os.urandom(900_000)
COMMITTED = 4


def get(base: str, path: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a GET; every answer, error or not, must be JSON."""
    try:
        with urllib.request.urlopen(base + path, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, BrokerProcess]]:
    """(the console's base URL, the broker) with the module's topic, records, group and schema."""
    broker = BrokerProcess(tmp_path_factory.mktemp("console-api")).start()
    try:
        with Admin(broker.bootstrap, request_timeout_ms=10_000) as admin:
            admin.create_topic(TOPIC, partitions=2)
            admin.register_schema(SUBJECT, SCHEMA)
            with Producer(broker.bootstrap, max_request_size=2 * 1024 * 1024) as producer:
                for number in range(JSON_RECORDS):
                    producer.send(TOPIC, json.dumps({"id": number, "items": [1, 2]}).encode(), key=b"order-%d" % number,
                                  headers={"trace": b"\xff\x00binary", "source": b"test"}, partition=0)
                producer.send(TOPIC, BINARY, key=b"binary", partition=0)
                producer.send(TOPIC, HUGE, key=b"huge", partition=0)
                producer.send(TOPIC, b"plain text", partition=0)
                producer.flush()
            admin.reset_offsets(GROUP, TOPIC, to_offset=COMMITTED, partitions=[0])
        yield f"http://{broker.address.host}:{broker.address.http_port}", broker
    finally:
        broker.stop()
    assert broker.process.returncode == 0 and "Traceback" not in broker.output(), broker.output()[-3000:]


def test_the_page_and_its_files_are_served(console):
    base, _ = console
    with urllib.request.urlopen(base + "/", timeout=10) as response:
        page = response.read().decode()
    assert "/console/console.js" in page and "/console/console.css" in page
    for asset, kind in (("console.js", "javascript"), ("console.css", "css")):
        with urllib.request.urlopen(f"{base}/console/{asset}", timeout=10) as response:
            assert kind in response.headers["Content-Type"]
            assert len(response.read()) > 100


def test_cluster_names_each_broker_and_its_health(console):
    base, broker = console
    status, cluster = get(base, "/api/cluster")
    assert status == 200
    assert cluster["controller_id"] == broker.node_id
    [entry] = cluster["brokers"]
    assert entry["answers"] and entry["registered"] and not entry["fenced"]
    assert entry["status"]["partitions"] >= 2
    assert cluster["topics"] >= 1


def test_topics_carry_partitions_sizes_and_rates_from_the_second_look(console):
    base, _ = console
    status, listing = get(base, "/api/topics")
    assert status == 200
    summary = next(topic for topic in listing["topics"] if topic["name"] == TOPIC)
    assert summary["partition_count"] == 2 and summary["messages"] == JSON_RECORDS + 3
    assert summary["size_bytes"] > len(HUGE)
    status, topic = get(base, f"/api/topics/{TOPIC}")
    assert status == 200
    first = topic["partitions"][0]
    assert (first["leader"], first["isr"], first["high_watermark"]) == (1, [1], JSON_RECORDS + 3)

    def rated() -> dict | None:
        found = next(topic for topic in get(base, "/api/topics")[1]["topics"] if topic["name"] == TOPIC)
        return found if found["in_rate"] is not None and found["out_rate"] is not None else None

    rates = wait_until(rated, 10, "rates on a later look")
    assert rates["in_rate"] >= 0 and rates["out_rate"] >= 0


def test_newest_records_come_first_by_default(console):
    base, _ = console
    status, page = get(base, f"/api/topics/{TOPIC}/messages?partition=0&limit=5")
    assert status == 200
    end = JSON_RECORDS + 3
    assert page["order"] == "newest" and page["high_watermark"] == end
    assert [message["offset"] for message in page["messages"]] == list(range(end - 1, end - 6, -1))
    assert page["messages"][0]["value"] == {"encoding": "text", "data": "plain text", "size": 10, "truncated": False}


def test_a_page_from_an_offset_or_a_time_runs_forward(console):
    base, _ = console
    status, page = get(base, f"/api/topics/{TOPIC}/messages?offset=2&limit=3")
    assert status == 200 and page["order"] == "oldest"
    assert [message["offset"] for message in page["messages"]] == [2, 3, 4]
    assert page["next_offset"] == 5
    status, page = get(base, f"/api/topics/{TOPIC}/messages?timestamp=2000-01-01T00:00:00Z&limit=1")
    assert status == 200 and [message["offset"] for message in page["messages"]] == [0]
    status, page = get(base, f"/api/topics/{TOPIC}/messages?partition=1")
    assert status == 200 and page["messages"] == [] and page["high_watermark"] == 0


def test_json_is_pretty_binary_is_hex_and_huge_is_cut_with_its_size(console):
    base, _ = console
    status, page = get(base, f"/api/topics/{TOPIC}/messages?offset=0&limit={MAX_LIMIT}")
    assert status == 200
    by_offset = {message["offset"]: message for message in page["messages"]}
    first = by_offset[0]
    assert first["value"]["encoding"] == "json"
    assert json.loads(first["value"]["data"]) == {"id": 0, "items": [1, 2]} and "\n  " in first["value"]["data"]
    assert first["key"]["data"] == "order-0"
    assert first["headers"]["trace"] == {"encoding": "hex", "data": b"\xff\x00binary".hex(), "size": 8,
                                         "truncated": False}
    assert first["headers"]["source"]["data"] == "test"
    binary = by_offset[JSON_RECORDS]["value"]
    assert binary == {"encoding": "hex", "data": BINARY.hex(), "size": 256, "truncated": False}
    huge = by_offset[JSON_RECORDS + 1]["value"]
    assert huge["encoding"] == "hex" and huge["truncated"] and huge["size"] == len(HUGE)
    assert len(huge["data"]) <= PREVIEW_CHARS and HUGE.hex().startswith(huge["data"])


def test_group_lag_is_the_admins(console):
    base, broker = console
    status, group = get(base, "/api/groups/" + urllib.parse.quote(GROUP, safe=""))
    assert status == 200
    with Admin(broker.bootstrap) as admin:
        described = admin.describe_group(GROUP)
    assert group["total_lag"] == described.total_lag == JSON_RECORDS + 3 - COMMITTED
    assert [(p["topic"], p["partition"], p["lag"]) for p in group["partitions"]] == \
        [(p.topic, p.partition, p.lag) for p in described.partitions]
    assert group["lag_history"][-1][1] == described.total_lag
    status, listing = get(base, "/api/groups")
    assert status == 200 and {"group_id": GROUP, "state": "Empty", "members": 0} in listing["groups"]


def test_schema_subjects_versions_and_text(console):
    base, _ = console
    status, listing = get(base, "/api/schemas")
    assert status == 200
    assert next(s for s in listing["subjects"] if s["subject"] == SUBJECT)["versions"] == [1]
    status, subject = get(base, f"/api/schemas/{SUBJECT}")
    assert status == 200 and subject["selected"]["version"] == 1
    assert json.loads(subject["selected"]["schema"]) == SCHEMA
    assert get(base, f"/api/schemas/{SUBJECT}?version=1")[0] == 200


@pytest.mark.parametrize("path", [
    "/api/topics/no-such-topic", "/api/topics/no-such-topic/messages", "/api/groups/no-such-group",
    "/api/schemas/no-such-subject", f"/api/schemas/{SUBJECT}?version=7", "/api/no-such-api", "/api/groups/",
])
def test_unknown_things_are_404_with_a_message(console, path):
    status, body = get(console[0], path)
    assert status == 404 and body["error"]


@pytest.mark.parametrize("query, mentions", [
    ("partition=x", "partition"), ("partition=-1", "partitions 0 to 1"), ("partition=2", "partitions 0 to 1"),
    ("partition=99999999999999999999", "partition"), ("offset=abc", "offset"), ("offset=1e3", "offset"),
    ("offset=%201", "offset"), ("offset=%D9%A3", "offset"), ("offset=-1", "offset"),
    ("offset=999999", "out of range"), ("offset=9223372036854775807", "out of range"),
    ("limit=0", "limit"), (f"limit={MAX_LIMIT + 1}", "limit"), ("limit=", "limit"),
    ("timestamp=yesterday", "timestamp"), ("timestamp=-5", "timestamp"), ("timestamp=" + "9" * 19, "timestamp"),
    ("offset=1&timestamp=1", "not both"), ("partition=0&partition=1", "more than once"), ("page=2", "unknown"),
])
def test_bad_queries_are_400_with_a_message(console, query, mentions):
    status, body = get(console[0], f"/api/topics/{TOPIC}/messages?{query}")
    assert status == 400 and mentions in body["error"]


def test_bad_schema_version_and_group_id_are_400(console):
    base, _ = console
    assert get(base, f"/api/schemas/{SUBJECT}?version=latest")[0] == 400
    assert get(base, f"/api/schemas/{SUBJECT}?versions=1")[0] == 400
    status, body = get(base, "/api/groups/" + "g" * 300)
    assert status == 400 and body["error"]


@pytest.mark.parametrize("path", [
    "/api/topics/%00", "/api/topics/..%2F..", "/api/groups/%00", "/api/groups/a%2Fb%20c", "/api/schemas/%FF",
    "/api/topics/" + "x" * 2000, "/api/topics/console-api/messages?offset=%00", "/api/cluster?x=%FF",
])
def test_odd_paths_never_get_a_server_error(console, path):
    status, body = get(console[0], path)
    assert status < 500 and isinstance(body, dict)


def test_a_node_that_is_down_does_not_answer_and_the_others_figures_show(tmp_path: Path):
    cluster = ClusterProcesses(tmp_path, size=3)
    for node_id in (1, 2):
        cluster.nodes[node_id].spawn()
    try:
        for node_id in (1, 2):
            cluster.nodes[node_id].wait_ready()
        with cluster.admin() as admin:
            admin.create_topic("spread", partitions=4, replication_factor=1)
        with Producer(cluster.bootstrap_of([1, 2])) as producer:
            for partition in range(4):
                producer.send("spread", b"x" * 100, partition=partition)
            producer.flush()
        address = cluster.nodes[1].address
        base = f"http://{address.host}:{address.http_port}"
        status, body = get(base, "/api/cluster")
        assert status == 200
        assert {b["node_id"]: b["answers"] for b in body["brokers"]} == {1: True, 2: True, 3: False}
        status, topic = get(base, "/api/topics/spread")
        assert status == 200
        assert {p["leader"] for p in topic["partitions"]} == {1, 2}
        assert all(p["high_watermark"] == 1 and p["size_bytes"] > 0 for p in topic["partitions"])
    finally:
        cluster.stop_all()
