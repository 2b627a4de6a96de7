"""``GET /health`` and ``GET /ready``: liveness and readiness probes (Kubernetes' httpGet probes).

``/health`` answers 200 ``{"status": "ok", "node_id": N}`` whenever the
process serves HTTP, from the start, before Raft or the logs are ready: a
liveness probe that fails means a stuck or dead process.

``/ready`` answers ``{"ready": bool, "node_id": N, "reasons": [...]}``, 200
when ready and 503 otherwise, the reasons saying what is missing. A node is
ready when it

1. is a Raft member that knows a reachable leader (the controller);
2. is registered with the controller in this incarnation (so it serves
   clients) and not fenced;
3. has caught up: it is in the ISR of every partition it replicates, so no
   partition is under-replicated because of this broker.

Rule 3 is what a rolling restart needs: restart the next broker only once
this one is ready, and no partition loses a second in-sync replica. It
reads the replicated metadata, so it holds only once the leader added this
broker back to the ISR. A partition whose ISR cannot take this broker back
(no leader: its last in-sync replica is down) keeps it not ready, which is
the truth: it has not caught up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from aiohttp import web
from rill.node.metadata.state import BrokerRegistration, TopicState

if TYPE_CHECKING:
    from rill.node.main import Node

PARTITIONS_NAMED_MAX = 5  # a reason names at most this many partitions, then counts the rest


def probe_routes(node: Node) -> list[web.RouteDef]:
    """The ``/health`` and ``/ready`` routes of ``node``."""
    node_id = node.config.node_id

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_id": node_id})

    async def ready(request: web.Request) -> web.Response:
        reasons = readiness_reasons(node_id, node.lifecycle.incarnation, node.controller_id(),
                                    node.state.brokers, node.state.topics)
        return web.json_response({"ready": not reasons, "node_id": node_id, "reasons": reasons},
                                 status=503 if reasons else 200)

    return [web.get("/health", health), web.get("/ready", ready)]


def readiness_reasons(node_id: int, incarnation: int, controller_id: int, brokers: Mapping[int, BrokerRegistration],
                      topics: Mapping[str, TopicState]) -> list[str]:
    """Why the node is not ready (see the module docstring); empty when it is.

    ``incarnation`` is the node's current one, ``controller_id`` the Raft
    leader it can reach (-1: none); ``brokers`` and ``topics`` are the
    replicated metadata as this node has applied it.
    """
    reasons = []
    if controller_id < 0:
        reasons.append("no Raft leader (controller) reachable: is a majority of the nodes up?")
    registration = brokers.get(node_id)
    if registration is None or registration.incarnation != incarnation:
        reasons.append("not registered with the controller yet: it does not serve clients")
    elif registration.fenced:
        reasons.append("fenced by the controller (missed heartbeats): it does not serve clients until it "
                       "registers again")
    behind = [f"{name}-{index}" for name, topic in sorted(topics.items())
              for index, state in enumerate(topic.partitions) if node_id in state.replicas and node_id not in state.isr]
    if behind:
        named = ", ".join(behind[:PARTITIONS_NAMED_MAX])
        more = f" and {len(behind) - PARTITIONS_NAMED_MAX} more" if len(behind) > PARTITIONS_NAMED_MAX else ""
        reasons.append(f"catching up: not in the ISR of {len(behind)} partitions it replicates ({named}{more})")
    return reasons
