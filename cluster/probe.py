"""Asking one node about itself: does it serve clients, and what is its NODE_STATUS.

Admin tooling for ``rill cluster up``, ``start`` and ``status``. Both probes
talk to exactly one address (never to the brokers it would name), so an
answer is that node's own, and both give up after ``timeout_ms``.
"""

from __future__ import annotations

import zmq
from rill.client import protocol
from rill.client.errors import RillError

PROBE_TIMEOUT_MS = 1000
CLIENT_ID = "rill-cluster-probe"


def node_answers(address: str, timeout_ms: int = PROBE_TIMEOUT_MS) -> bool:
    """Whether the broker at ``host:port`` answers a client's metadata request in time.

    A node answers clients only once it has registered with the controller,
    which needs a Raft majority of the cluster running.
    """
    from rill.client import (
        Admin,  # imported here: the client is only loaded by commands that talk to brokers
    )

    try:
        with Admin(address, request_timeout_ms=timeout_ms, client_id=CLIENT_ID) as admin:
            admin.list_topics()
    except RillError:
        return False
    return True


def node_status(address: str, timeout_ms: int = PROBE_TIMEOUT_MS) -> protocol.NodeStatusResponse | None:
    """The node's own report (Raft role, controller, partitions it leads, ...), or None if it does not answer.

    A node answers this as soon as its Raft group has a leader, before it has
    registered with the controller and serves clients.
    """
    from rill.client.network import NetworkClient

    context = zmq.Context()
    network = NetworkClient(context, CLIENT_ID)
    try:
        return network.request(address, protocol.NODE_STATUS, protocol.NodeStatusRequest(), timeout_ms)
    except RillError:
        return None
    finally:
        network.close()
        context.term()
