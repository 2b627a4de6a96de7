"""The HTTP server on a node's HTTP port: aiohttp on the broker's own event loop.

Each part of the node that speaks HTTP (metrics, probes, the console)
contributes routes with ``add_routes`` before ``start``. Handlers run on
the broker's loop, so they must not block it: anything slow (reading a
partition for the console, say) goes to a thread with bounded work. A
request body is capped at MAX_REQUEST_BYTES; a handler error is a 500 with
a one-line message and a log line, never a dead server.
"""

from __future__ import annotations

import logging
from typing import Iterable

from aiohttp import web
from rill.client.errors import InvalidConfigError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


class HttpServer:
    """Serves the routes added before ``start`` on ``host:port`` until ``close``."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self._app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_errors_as_json])
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        self._app.add_routes(list(routes))

    async def start(self) -> None:
        """Listen; InvalidConfigError if the port is taken."""
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            raise InvalidConfigError(f"cannot listen on http://{self.host}:{self.port}: {error}") from None

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@web.middleware
async def _errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """An unexpected handler error answers 500 with a short JSON message and is logged; HTTP errors raised
    on purpose (web.HTTPException: 400, 404, ...) pass as they are."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as error:  # a bug in a handler must not take the server down
        log.exception("HTTP %s %s failed", request.method, request.path)
        return web.json_response({"error": f"internal error: {type(error).__name__}"}, status=500)
