"""The web front end: what a deployment and its users read over HTTP.

The probes a deployment needs (``/healthz``: the process answers; ``/readyz``: the broker and
the job store answer too), Prometheus metrics (``/metrics``: the deployment's figures from the
job store, see workers/metrics.py) and a job's log behind a signed link (``/jobs/ID/log``).
bot/application.py serves these beside the Slack and GitHub front ends.
"""

from __future__ import annotations

import asyncio
import logging
import time as _time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from kombu.connection import Connection

from bot.loglinks import verify
from workers import broker  # noqa: F401  (the embedded broker's transport, for /readyz)
from workers.config import Settings
from workers.store import open_store

SETTINGS = web.AppKey("settings", Settings)
METRICS: web.AppKey[Any] = web.AppKey("metrics")  # a prometheus_client CollectorRegistry
# What adds the counts a front end holds back for a moment (bot/github/app.py): run before a scrape.
FLUSH_COUNTS: web.AppKey[list[Callable[[], Awaitable[None]]]] = web.AppKey("flush_counts", list)


class JobAccessLogger(AbstractAccessLogger):
    """aiohttp's access log line (its default format, ``%a %t "%r" %s %b "%{Referer}i"
    "%{User-Agent}i"``), with the job id of job routes (``/jobs/ID/log``) on the record.

    Written for a line per request: one f-string instead of aiohttp's format table, the start
    time's text made once a second, and the record handed to the handlers directly (no
    caller lookup, no ``extra`` fields that no wasmbot formatter prints)."""

    _stamp: tuple[int, str] = (-1, "")

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            started = int(_time.time() - time)
            if started != self._stamp[0]:
                stamp = _time.strftime("[%d/%b/%Y:%H:%M:%S %z]", _time.localtime(started))
                type(self)._stamp = (started, stamp)
            version, headers = request.version, request.headers
            line = (f'{request.remote or "-"} {self._stamp[1]} "{request.method} {request.path_qs} '
                    f'HTTP/{version.major}.{version.minor}" {response.status} {response.body_length} '
                    f'"{headers.get("Referer", "-")}" "{headers.get("User-Agent", "-")}"')
            match = getattr(request, "match_info", None)
            job_id = match.get("job") if match is not None else None
            self.logger.handle(self.logger.makeRecord(
                self.logger.name, logging.INFO, __file__, 0, line, (), None,
                extra=None if job_id is None else {"job_id": job_id}))
        except Exception:
            self.logger.exception("Error in logging")


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


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    for flush in request.app[FLUSH_COUNTS]:
        await flush()
    body = await asyncio.to_thread(generate_latest, request.app[METRICS])  # the store answers slowly
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def job_log(request: web.Request) -> web.Response:
    """A job's record and full log, for whoever holds the signed link the job message shows."""

    settings = request.app[SETTINGS]
    job_id = request.match_info["job"]
    if not verify(settings, job_id, request.query.get("sig", ""), request.query.get("exp", "")):
        raise web.HTTPForbidden(text="this link is not valid for that job, or has expired\n")
    store = open_store(settings)
    job = await asyncio.to_thread(store.get, job_id)
    if job is None:
        raise web.HTTPNotFound(text=f"no job {job_id}\n")
    events = await asyncio.to_thread(store.events, job_id)
    lines = [f"job {job.id} {job.state.value}: {job.text}"]
    lines += [f"[{e.stage or 'job'}] {e.text or (e.state.value if e.state else '')}" for e in events]
    return web.Response(text="\n".join(lines) + "\n")


def mount(app: web.Application, settings: Settings) -> None:
    """The web front end's routes: probes, metrics and the signed job log."""
    app[SETTINGS] = settings
    app[FLUSH_COUNTS] = []
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from workers import metrics as metrics_

    app[METRICS] = metrics_.registry(open_store(settings))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/jobs/{job:[0-9a-f]{12}}/log", job_log)
