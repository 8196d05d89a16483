"""``wasmbot serve``: the web application on a listening socket that slow clients cannot exhaust.

aiohttp (3.14.5; aio-libs/aiohttp#13681) arms its keep-alive timer when a connection opens and
closes the connection if no complete request head has arrived when it fires, whatever bytes
trickle in meanwhile; so ``keepalive_timeout`` set to ``web_header_timeout`` is the header read
timeout (and the idle keep-alive time).  Bodies are read with their own deadline and size limit
per route (``bot.httpbody.read_body``).  ``ConnectionGuard`` caps open connections: at the cap, a new one
closes the oldest connection that is not in a request, so a flood of idle or half-sent
connections cannot lock out a health probe or a webhook, and the process never holds an
unbounded number of descriptors.

``run`` serves on the event loop ``web_event_loop`` names: uvloop by default, asyncio's own
as the fallback; aiohttp supports both, and the limits here hold on both
(tests/test_serve_limits.py runs each).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from workers.config import Settings

log = logging.getLogger("wasmbot.serve")
SPARE_FDS = 128  # descriptors kept for the store, the broker, logs and outgoing API calls


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's handler, reported to the guard as it opens and closes."""

    def __init__(self, guard: ConnectionGuard, handler: RequestHandler) -> None:
        self.guard, self.handler = guard, handler
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without being its subclasses.
        self.transport = cast(asyncio.Transport, transport)
        if not self.guard.admit(self):
            self.transport.abort()
            return
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> None:
        self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.guard.release(self):
            self.handler.connection_lost(exc)


class ConnectionGuard:
    """A protocol factory for ``loop.create_server`` that keeps at most ``limit`` connections.

    A connection is in a request while aiohttp's handler says so (``_request_in_progress``,
    set around the request handler): no middleware runs on every request to track it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[_Connection, None] = {}  # in the order they were accepted
        self.server: web.Server | None = None

    def __call__(self) -> asyncio.Protocol:
        assert self.server is not None, "bind the runner's server first"
        return _Connection(self, self.server())

    def admit(self, connection: _Connection) -> bool:
        """Take ``connection`` in, closing the oldest idle one at the cap; False when all are busy."""
        if len(self.open) >= self.limit:
            idle = next((c for c in self.open if not c.handler._request_in_progress), None)
            if idle is None:
                log.warning("refused a connection: all %d are in requests", self.limit)
                return False
            self.open.pop(idle)
            assert idle.transport is not None
            idle.transport.close()
            idle.handler.connection_lost(None)
        self.open[connection] = None
        return True

    def release(self, connection: _Connection) -> bool:
        """Forget ``connection``; False if it was never admitted or was evicted already."""
        return self.open.pop(connection, 0) is None


def connection_limit(wanted: int) -> int:
    """``wanted``, lowered to what the descriptor limit allows after raising it as far as it goes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning("web_max_connections %d lowered to %d: the descriptor limit is %d",
                    wanted, soft - SPARE_FDS, soft)
        return max(1, soft - SPARE_FDS)
    return wanted


async def serve(app: web.Application, settings: Settings, host: str, port: int, **runner: Any) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, with the read timeouts and limits of ``settings``."""
    guard = ConnectionGuard(connection_limit(settings.web_max_connections))
    app_runner = web.AppRunner(app, keepalive_timeout=settings.web_header_timeout, **runner)
    await app_runner.setup()
    guard.server = app_runner.server
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listener = await loop.create_server(guard, host, port, backlog=settings.web_backlog, reuse_address=True)
    log.info("serving on http://%s:%s (event loop: %s)", host, port, settings.web_event_loop)
    try:
        await stop.wait()
    finally:
        listener.close()
        await app_runner.cleanup()


def run(app: web.Application, settings: Settings, host: str, port: int, **runner: Any) -> None:
    """``serve`` on the event loop ``settings.web_event_loop`` names, until SIGINT or SIGTERM."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if settings.web_event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as loop:
        loop.run(serve(app, settings, host, port, **runner))
