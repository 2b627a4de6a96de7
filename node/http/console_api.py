"""The web console: its JSON API under /api/ and its static files (/ and /console/...), served by every node.

Read-only. Brokers, topics, partitions, leaders, ISR and schemas come from
this node's replicated state; offsets, sizes, rates and each node's health
from the nodes' reports (cluster_report.py, topic_figures.py); groups and
lag from the client's Admin, records from a group-less Consumer
(message_browser.py). Client calls block, so they run on the console's own
pool of WORKERS threads, each awaited at most WORK_TIMEOUT_S, with at most
MAX_WAITING requests waiting: the broker's loop never waits on them. One
Admin per node serves every request (it is thread-safe); it is closed when
the process exits.

Errors are JSON ``{"error": message}``: 404 for an unknown topic, group,
subject, schema version or API path; 400 for a bad query (an unknown or
repeated parameter, a value that is not a number, a partition the topic
does not have, an offset outside the log, a limit above MAX_LIMIT); 503
when the cluster does not answer in time or too many requests wait.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import msgspec
from aiohttp import web
from rill.client import Admin, protocol
from rill.client.errors import (
    GroupIdNotFoundError,
    InvalidGroupIdError,
    OffsetOutOfRangeError,
    RillError,
    UnknownTopicError,
)
from rill.node.http.cluster_report import gather_reports, local_report
from rill.node.http.console_query import fail, integer, only_parameters, page_request
from rill.node.http.lag_history import LagHistory
from rill.node.http.message_browser import OffsetNotInLogError, read_page
from rill.node.http.topic_figures import Figures, PartitionFigures, TopicFigures
from rill.node.metadata.state import PartitionState, TopicState

if TYPE_CHECKING:
    from rill.node.main import Node

CONSOLE_DIR = Path(__file__).parent / "console"
WORKERS = 4
MAX_WAITING = 16  # requests waiting for client work at once; more are refused rather than queued
WORK_TIMEOUT_S = 10.0
ADMIN_TIMEOUT_MS = 4_000
NOT_FOUND = (UnknownTopicError, GroupIdNotFoundError)
BAD_REQUEST = (InvalidGroupIdError, OffsetOutOfRangeError, OffsetNotInLogError)

Result = TypeVar("Result")


def console_routes(node: Node) -> list[web.AbstractRouteDef]:
    """The console's routes on ``node``'s HTTP server."""
    return ConsoleApi(node).routes()


class ConsoleApi:
    """The handlers. State kept here (rate samples, lag history) lives on the broker's loop."""

    def __init__(self, node: Node):
        self._node = node
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="rill-console")
        self._waiting = 0
        self._admin: Admin | None = None
        self._admin_lock = threading.Lock()
        self._figures = TopicFigures()
        self._lag = LagHistory()
        atexit.register(self._close)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.index),
            web.static("/console", CONSOLE_DIR),
            web.get("/api/cluster", self.cluster),
            web.get("/api/node", self.node_report),
            web.get("/api/topics", self.topics),
            web.get("/api/topics/{name}", self.topic),
            web.get("/api/topics/{name}/messages", self.messages),
            web.get("/api/groups", self.groups),
            web.get("/api/groups/{group_id:.+}", self.group),
            web.get("/api/schemas", self.schemas),
            web.get("/api/schemas/{subject:.+}", self.subject),
            web.get("/api/{path:.*}", self.unknown),
        ]

    # ---- pages and the node's own report --------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def node_report(self, request: web.Request) -> web.Response:
        return _json_bytes(msgspec.json.encode(local_report(self._node)))

    async def unknown(self, request: web.Request) -> NoReturn:
        fail(web.HTTPNotFound, f"no API at {request.path}: see /api/cluster, /api/topics, /api/groups, "
                               "/api/schemas")

    # ---- cluster and topics ----------------------------------------------------------------------

    async def cluster(self, request: web.Request) -> web.Response:
        """Every configured broker (registered, fenced, answers, its own status) and the cluster's totals."""
        node = self._node
        reports = await gather_reports(node)
        registered = node.state.brokers
        brokers = []
        for address in node.config.nodes:
            registration, report = registered.get(address.node_id), reports.get(address.node_id)
            brokers.append({"node_id": address.node_id, "host": address.host, "port": address.port,
                            "http_port": address.http_port, "registered": registration is not None,
                            "fenced": registration.fenced if registration is not None else None,
                            "answers": report is not None, "status": report.status if report else None})
        partitions = [state for topic in node.state.topics.values() for state in topic.partitions]
        return web.json_response({
            "cluster_id": node.config.cluster_id, "serving_node_id": node.config.node_id,
            "controller_id": node.controller_id(), "brokers": brokers, "topics": len(node.state.topics),
            "partitions": len(partitions),
            "under_replicated": sum(1 for state in partitions if len(state.isr) < len(state.replicas)),
            "offline": sum(1 for state in partitions if state.leader < 0)})

    async def topics(self, request: web.Request) -> web.Response:
        figures = await self._figures_now()
        return web.json_response({"topics": [_topic_summary(topic, figures)
                                             for _, topic in sorted(self._node.state.topics.items())]})

    async def topic(self, request: web.Request) -> web.Response:
        topic = self._topic(request.match_info["name"])
        figures = await self._figures_now()
        partitions = [_partition_detail(index, state, figures.partitions.get((topic.name, index)))
                      for index, state in enumerate(topic.partitions)]
        return web.json_response({**_topic_summary(topic, figures), "topic_id": topic.topic_id,
                                  "config": dict(sorted(topic.config.items())), "partitions": partitions})

    async def messages(self, request: web.Request) -> web.Response:
        topic = self._topic(request.match_info["name"])
        page = page_request(topic, request.query)
        return web.json_response(await self._blocking(read_page, self._bootstrap(), page))

    async def _figures_now(self) -> Figures:
        reports = await gather_reports(self._node)
        return self._figures.look(report for report in reports.values() if report is not None)

    def _topic(self, name: str) -> TopicState:
        topic = self._node.state.topics.get(name)
        if topic is None:
            fail(web.HTTPNotFound, f"no topic {name!r}")
        return topic

    # ---- consumer groups -------------------------------------------------------------------------

    async def groups(self, request: web.Request) -> web.Response:
        listed = await self._blocking(lambda: self._shared_admin().list_groups())
        return web.json_response({"groups": msgspec.to_builtins(listed)})

    async def group(self, request: web.Request) -> web.Response:
        """The group as Admin.describe_group tells it, with its lag history on this node."""
        group_id = request.match_info["group_id"]
        described = await self._blocking(lambda: self._shared_admin().describe_group(group_id))
        history = self._lag.record(group_id, described.total_lag)
        return web.json_response({**msgspec.to_builtins(described), "lag_history": history})

    # ---- schema registry -------------------------------------------------------------------------

    async def schemas(self, request: web.Request) -> web.Response:
        subjects = []
        for name, subject in sorted(self._node.schemas.registry.subjects.items()):
            live = subject.live()
            if live:
                subjects.append({"subject": name, "compatibility": subject.compatibility,
                                 "versions": [entry.version for entry in live],
                                 "latest_version": live[-1].version, "latest_id": live[-1].schema_id})
        return web.json_response({"subjects": subjects})

    async def subject(self, request: web.Request) -> web.Response:
        """A subject's live versions, and the text of one (``?version=N``, default the latest)."""
        name = request.match_info["subject"]
        registry = self._node.schemas.registry
        subject = registry.subjects.get(name)
        live = subject.live() if subject is not None else ()
        if not live:
            fail(web.HTTPNotFound, f"no subject {name!r}")
        only_parameters(request.query, ("version",))
        number = integer(request.query, "version", live[-1].version)
        chosen = subject.find(number)
        if chosen is None:
            fail(web.HTTPNotFound, f"subject {name!r} has no version {number}: it has "
                                   + ", ".join(str(entry.version) for entry in live))
        text = registry.schemas[chosen.schema_id].text
        return web.json_response({
            "subject": name, "compatibility": subject.compatibility,
            "versions": [{"version": entry.version, "id": entry.schema_id} for entry in live],
            "selected": {"version": chosen.version, "id": chosen.schema_id,
                         "schema": json.dumps(json.loads(text), indent=2, ensure_ascii=False)}})

    # ---- blocking client work ------------------------------------------------------------------

    async def _blocking(self, work: Callable[..., Result], *args: Any) -> Result:
        """``work(*args)`` on the console's threads, awaited at most WORK_TIMEOUT_S (work still queued then is
        dropped); client errors as HTTP errors. 503 at once while MAX_WAITING requests wait already."""
        if self._waiting >= MAX_WAITING:
            fail(web.HTTPServiceUnavailable, f"the console is busy: {MAX_WAITING} requests wait for the cluster")
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        self._waiting += 1
        try:
            return await asyncio.wait_for(future, WORK_TIMEOUT_S)
        except TimeoutError:
            fail(web.HTTPServiceUnavailable, f"the cluster did not answer within {WORK_TIMEOUT_S:.0f} s")
        except NOT_FOUND as error:
            fail(web.HTTPNotFound, str(error))
        except BAD_REQUEST as error:
            fail(web.HTTPBadRequest, str(error))
        except RillError as error:
            fail(web.HTTPServiceUnavailable, f"{type(error).__name__}: {error}")
        finally:
            self._waiting -= 1

    def _shared_admin(self) -> Admin:
        """The node's one Admin, made at first use (on a worker thread: Admin calls block)."""
        with self._admin_lock:
            if self._admin is None:
                self._admin = Admin(self._bootstrap(), request_timeout_ms=ADMIN_TIMEOUT_MS, client_id="rill-console")
            return self._admin

    def _bootstrap(self) -> str:
        """Every node's client address, this node's first."""
        me = self._node.config.node_id
        nodes = sorted(self._node.config.nodes, key=lambda address: address.node_id != me)
        return ",".join(f"{address.host}:{address.port}" for address in nodes)

    def _close(self) -> None:
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None


# ---- views ------------------------------------------------------------------------------------------


def _topic_summary(topic: TopicState, figures: Figures) -> dict[str, Any]:
    """A topic's line in the topics table: counts, sums over partitions (None when one is unknown), rates."""
    found = [figures.partitions.get((topic.name, index), PartitionFigures()) for index in range(len(topic.partitions))]
    messages = [None if f.high_watermark is None or f.log_start_offset is None
                else f.high_watermark - f.log_start_offset for f in found]
    return {"name": topic.name, "internal": topic.name in protocol.INTERNAL_TOPICS,
            "partition_count": len(topic.partitions),
            "replication_factor": len(topic.partitions[0].replicas) if topic.partitions else 0,
            "under_replicated": sum(1 for state in topic.partitions if len(state.isr) < len(state.replicas)),
            "offline": sum(1 for state in topic.partitions if state.leader < 0),
            "size_bytes": _total(f.size_bytes for f in found), "messages": _total(messages),
            "in_rate": _total(f.in_rate for f in found), "out_rate": figures.out_rate(topic.name)}


def _partition_detail(index: int, state: PartitionState, figures: PartitionFigures | None) -> dict[str, Any]:
    figures = figures or PartitionFigures()
    return {"partition": index, "leader": state.leader, "replicas": list(state.replicas), "isr": list(state.isr),
            "leader_epoch": state.leader_epoch, "under_replicated": len(state.isr) < len(state.replicas),
            "log_start_offset": figures.log_start_offset, "high_watermark": figures.high_watermark,
            "log_end_offset": figures.log_end_offset, "size_bytes": figures.size_bytes,
            "in_rate": figures.in_rate}


def _total(values: Iterable[float | None]) -> float | None:
    """The sum, or None if any value is unknown."""
    values = list(values)
    return None if any(value is None for value in values) else sum(values)


def _json_bytes(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
