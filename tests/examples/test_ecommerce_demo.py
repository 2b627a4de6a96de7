"""The e-commerce demo (examples/ecommerce, ``make demo``): end to end on a cluster it starts and stops
itself; and one service stopped while the others keep working, then restarted, catching up from its
committed offsets with no order skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from brokers import ClusterProcesses, wait_until
from rill.client import Admin
from rill.cluster import launcher
from rill.cluster.layout import free_base_port, read_layout

DEMO = Path(__file__).resolve().parents[2] / "examples" / "ecommerce"
sys.path.insert(0, str(DEMO))

import demo  # noqa: E402 - examples/ecommerce is not a package
from shop import read_json  # noqa: E402


def handled(state_dir: Path, service: str) -> set[int]:
    try:
        return {int(line) for line in (state_dir / f"{service}.handled").read_text().split()}
    except FileNotFoundError:
        return set()


def placed(state_dir: Path) -> set[int]:
    return {int(line) for line in (state_dir / "order.placed").read_text().split()}


def test_the_demo_starts_a_cluster_handles_every_order_and_stops_what_it_started(tmp_path):
    base_port = free_base_port(3)
    data_dir, state_dir = tmp_path / "data", tmp_path / "state"
    result = subprocess.run(
        [sys.executable, str(DEMO / "demo.py"), "--nodes", "3", "--base-port", str(base_port), "--data-dir",
         str(data_dir), "--duration", "4", "--rate", "40", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders placed" in result.stdout and "stopped the cluster the demo started" in result.stdout
    orders = placed(state_dir)
    assert len(orders) == read_json(state_dir / "order.json")["placed"] > 100
    payment = read_json(state_dir / "payment.json")
    assert payment["dead_lettered"] > 0 and payment["retried"] > 0  # declined cards; gateway timeouts
    assert len(handled(state_dir, "payment") & orders) + payment["dead_lettered"] == len(orders)
    assert handled(state_dir, "inventory") == orders == handled(state_dir, "notification")
    layout = read_layout(data_dir)
    assert all(launcher.read_pid(layout, node_id) is None
               or not launcher.process_state(launcher.read_pid(layout, node_id),
                                             launcher.node_command(layout, node_id)).alive
               for node_id in layout.node_ids)


@pytest.fixture
def cluster(tmp_path):
    cluster = ClusterProcesses(tmp_path / "cluster", size=1).start_all()
    yield cluster
    cluster.stop_all()


def test_a_stopped_service_leaves_the_others_working_and_catches_up_when_restarted(cluster, tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    demo.prepare(cluster.bootstrap, demo.Console(file=open(os.devnull, "w")))
    processes = {service: demo.spawn(f"{service}_service", cluster.bootstrap, state_dir)
                 for service in demo.SERVICES}
    try:
        processes["order"] = demo.spawn("order_service", cluster.bootstrap, state_dir, "--duration", "6",
                                        "--rate", "40")
        wait_until(lambda: len(handled(state_dir, "notification")) >= 20, 60, "notifications to start")
        processes["notification"].send_signal(signal.SIGTERM)
        assert processes["notification"].wait(30) == 0
        wait_until(lambda: read_json(state_dir / "order.json").get("done"), 60, "the orders to be placed")
        orders = placed(state_dir)
        with Admin(cluster.bootstrap) as admin:
            wait_until(lambda: handled(state_dir, "inventory") == orders, 60, "inventory to handle every order")
            assert demo.group_lag(admin, "notifications") > 0
            assert not orders <= handled(state_dir, "notification")
            processes["notification"] = demo.spawn("notification_service", cluster.bootstrap, state_dir)
            wait_until(lambda: demo.group_lag(admin, "notifications") == 0, 60,
                       "the restarted notification service to catch up")
        assert orders <= handled(state_dir, "notification")
        assert processes["payment"].poll() is None and processes["inventory"].poll() is None
    finally:
        demo.stop(processes)
