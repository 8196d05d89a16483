"""The aiohttp application that the Slack and GitHub front ends join.

For now it serves the probes a deployment needs: ``/healthz`` (the process answers) and
``/readyz`` (the broker and the job store answer too).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from kombu.connection import Connection

from bot.config import Settings
from workers.store import open_store

SETTINGS = web.AppKey("settings", Settings)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _check_broker(settings: Settings) -> None:
    with Connection(settings.broker_url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    checks: dict[str, str] = {}
    for name, check in (("broker", lambda: _check_broker(settings)),
                        ("store", lambda: open_store(settings).ping())):
        try:
            await asyncio.wait_for(asyncio.to_thread(check), timeout=5)
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which and why
            checks[name] = f"error: {type(exc).__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             status=200 if ready else 503)


def make_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
