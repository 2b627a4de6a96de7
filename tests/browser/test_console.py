"""The web console in a real headless Chromium (Debian's chromium package, driven by Playwright).

One broker holds a topic with JSON, binary and huge records, a consumer
group with committed offsets and a schema subject. The console shows the
broker as answering, lists the topic, shows in the message browser a JSON
record pretty-printed, a binary one as hex and a huge one cut with its
size, and a group's total lag equal to what the Admin's describe_group
says. A screenshot of each page goes to test-artifacts/console/ (ignored
by git) for a person to look at.

`make test` installs chromium when it runs as root; elsewhere, without
/usr/bin/chromium, these tests skip and say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import BrokerProcess
from playwright.sync_api import expect, sync_playwright
from rill.client import Admin, Producer
from rill.node.http.value_preview import PREVIEW_CHARS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
TIMEOUT_MS = 15_000
TOPIC = "console-orders"
GROUP = "console-billing"
SUBJECT = "console-orders-value"
SCHEMA = {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}
ORDERS = 12
BINARY = bytes(range(40))
HUGE = b"a long line of text " * 20_000  # 400 KB: shown cut, with its size
COMMITTED = 5

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=(
    "no /usr/bin/chromium: install Debian's chromium package (`make test` does, as root) to run the browser tests"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker with the topic (JSON orders, a binary and a huge record), the group's offsets and the subject."""
    process = BrokerProcess(tmp_path_factory.mktemp("console-browser")).start()
    try:
        with Admin(process.bootstrap, request_timeout_ms=10_000) as admin:
            admin.create_topic(TOPIC, partitions=1)
            admin.register_schema(SUBJECT, SCHEMA)
            with Producer(process.bootstrap) as producer:
                for order_id in range(ORDERS):
                    producer.send(TOPIC, json.dumps({"order_id": order_id, "sku": "tea"}).encode(),
                                  key=b"order-%d" % order_id, headers={"source": b"shop"})
                producer.send(TOPIC, BINARY, key=b"blob")
                producer.send(TOPIC, HUGE, key=b"huge")
                producer.flush()
            admin.reset_offsets(GROUP, TOPIC, to_offset=COMMITTED)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def page(broker: BrokerProcess):
    """A Chromium page on the console of ``broker``; ``page.problems`` collects script errors and failed loads."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(TIMEOUT_MS)
            tab.problems = []
            tab.on("pageerror", lambda error: tab.problems.append(f"script error: {error}"))
            tab.on("console", lambda message: message.type == "error" and tab.problems.append(message.text))
            tab.goto(f"http://{broker.address.host}:{broker.address.http_port}/")
            yield tab
        finally:
            browser.close()


def screenshot(page, name: str) -> None:
    """Save the page under ARTIFACTS; the page must have had no script error or failed load so far."""
    assert page.problems == []
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_cluster_shows_the_broker_answering(page, broker):
    page.goto(page.url.split("#")[0] + "#/cluster")
    row = page.locator(f'#brokers-table tr[data-node="{broker.node_id}"]')
    expect(row).to_contain_text("answers")
    expect(row).to_contain_text("controller")
    expect(row).to_contain_text(f"{broker.address.host}:{broker.port}")
    screenshot(page, "cluster")


def test_topics_list_the_topic(page):
    page.click("header nav >> text=Topics")
    row = page.locator(f'#topics-table tr[data-topic="{TOPIC}"]')
    expect(row).to_contain_text(f"{ORDERS + 2}")  # messages
    expect(row.locator("td").nth(7)).to_have_text("0.0/s")  # the in rate, from the page's second refresh on
    screenshot(page, "topics")
    row.locator("a").click()
    expect(page.locator("#partitions-table tr[data-partition='0']")).to_contain_text("1")
    screenshot(page, "topic")


def test_message_browser_shows_json_pretty_and_binary_as_hex(page):
    page.goto(page.url.split("#")[0] + f"#/topics/{TOPIC}")
    page.click("#browse-link")
    newest = page.locator("#messages-table tr.message").first
    expect(newest).to_have_attribute("data-offset", str(ORDERS + 1))  # newest first
    expect(newest.locator("td.value .meta")).to_have_text("text, truncated: 390.6 KiB in all")
    assert len(newest.locator("td.value pre").inner_text()) <= PREVIEW_CHARS
    binary = page.locator(f"#messages-table tr.message[data-offset='{ORDERS}']")
    hex_value = binary.locator("td.value pre")
    expect(hex_value).to_have_attribute("data-encoding", "hex")
    assert hex_value.inner_text().startswith("00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n10 11 ")
    expect(binary.locator("td.key pre")).to_have_text("blob")
    json_value = page.locator(f"#messages-table tr.message[data-offset='{ORDERS - 1}'] td.value pre")
    expect(json_value).to_have_attribute("data-encoding", "json")
    assert json_value.inner_text() == json.dumps({"order_id": ORDERS - 1, "sku": "tea"}, indent=2)
    assert "null" not in page.locator("#view").inner_text()  # every record here has a key and a value
    screenshot(page, "messages")
    page.fill("#browse-offset", "0")
    page.click("#browse-go")
    expect(page.locator("#messages-table tr.message").first).to_have_attribute("data-offset", "0")
    expect(page.locator("#page-summary")).to_contain_text("oldest first")


def test_group_shows_the_admins_lag(page, broker):
    with Admin(broker.bootstrap) as admin:
        lag = admin.describe_group(GROUP).total_lag
    assert lag == ORDERS + 2 - COMMITTED
    page.click("header nav >> text=Consumer groups")
    page.locator(f'#groups-table tr[data-group="{GROUP}"] a').click()
    expect(page.locator("#total-lag")).to_have_text(str(lag))
    expect(page.locator(f"#lag-table tr[data-partition='{TOPIC}-0']")).to_contain_text(str(lag))
    expect(page.locator("svg.lag-chart circle").first).to_be_attached()
    expect(page.locator("svg.lag-chart polyline")).to_be_attached()  # a line from the second sample on
    screenshot(page, "group")


def test_schema_registry_shows_the_subject_and_its_schema(page):
    page.click("header nav >> text=Schemas")
    expect(page.locator(f'#subjects-table tr[data-subject="{SUBJECT}"]')).to_contain_text("BACKWARD")
    screenshot(page, "schemas")
    page.locator(f'#subjects-table tr[data-subject="{SUBJECT}"] a').click()
    expect(page.locator("#schema-text")).to_contain_text('"order_id"')
    assert json.loads(page.locator("#schema-text").inner_text()) == SCHEMA
    screenshot(page, "schema")
