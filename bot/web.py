"""The aiohttp application that the Slack and GitHub front ends join.

It serves the probes a deployment needs (``/healthz``: the process answers; ``/readyz``: the
broker and the job store answer too), Prometheus metrics (``/metrics``: the deployment's figures
from the job store, see workers/metrics.py), a job's log behind a signed link (``/jobs/ID/log``),
and the Slack front end at ``/slack/events`` and the GitHub one at ``/github/webhook`` when each
is configured.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger
from kombu.connection import Connection

from workers import broker  # noqa: F401  (the embedded broker's transport, for /readyz)
from workers.config import Settings
from workers.logsetup import job_context
from workers.store import open_store

SETTINGS = web.AppKey("settings", Settings)
SLACK: web.AppKey[Any] = web.AppKey("slack")
GITHUB: web.AppKey[Any] = web.AppKey("github")
METRICS: web.AppKey[Any] = web.AppKey("metrics")  # a prometheus_client CollectorRegistry


class JobAccessLogger(AccessLogger):
    """aiohttp's access log, with the job id of job routes (``/jobs/ID/log``) on the line."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        match = getattr(request, "match_info", None)
        job_id = match.get("job") if match is not None else None
        if job_id is None:
            super().log(request, response, time)
            return
        with job_context(job_id):
            super().log(request, response, time)


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The raw body, at most ``limit`` bytes and within ``timeout`` seconds: 413 or 408 otherwise.

    A declared length over the limit is refused before anything is read."""
    too_large = f"the body is over this endpoint's limit of {limit} bytes\n"
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length, text=too_large)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise web.HTTPRequestEntityTooLarge(limit, size, text=too_large)
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the body did not arrive within {timeout:g} s\n") from None
    except HttpProcessingError as exc:  # broken chunked encoding, bad compression, a short body
        raise web.HTTPBadRequest(text=f"the body could not be read: {exc.message}\n") from None
    return b"".join(chunks)


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

    body = await asyncio.to_thread(generate_latest, request.app[METRICS])  # the store answers slowly
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def job_log(request: web.Request) -> web.Response:
    """A job's record and full log, for whoever holds the signed link the job message shows."""
    from bot.slack.reporter import verify

    settings = request.app[SETTINGS]
    job_id = request.match_info["job"]
    if not verify(settings, job_id, request.query.get("sig", "")):
        raise web.HTTPForbidden(text="this link is not valid for that job\n")
    store = open_store(settings)
    job = await asyncio.to_thread(store.get, job_id)
    if job is None:
        raise web.HTTPNotFound(text=f"no job {job_id}\n")
    events = await asyncio.to_thread(store.events, job_id)
    lines = [f"job {job.id} {job.state.value}: {job.text}"]
    lines += [f"[{e.stage or 'job'}] {e.text or (e.state.value if e.state else '')}" for e in events]
    return web.Response(text="\n".join(lines) + "\n")


def make_app(settings: Settings) -> web.Application:
    # Webhooks read their bodies with read_body and their own limits; other routes take none.
    app = web.Application(client_max_size=2**16)
    app[SETTINGS] = settings
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from workers import metrics as metrics_

    app[METRICS] = metrics_.registry(open_store(settings))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/jobs/{job:[0-9a-f]{12}}/log", job_log)
    from bot.slack import app as slack

    if slack.configured(settings):
        app[SLACK] = slack.SlackFrontEnd(settings)
        app[SLACK].mount(app)
    from bot.github import app as github

    if github.configured(settings):
        from bot.slack.reporter import log_url

        app[GITHUB] = github.GitHubFrontEnd(settings, log_url=lambda job: log_url(settings, job.id))
        app[GITHUB].mount(app)
        if SLACK in app:  # releases published on GitHub are announced in Slack
            app[GITHUB].announce = app[SLACK].reporter.announce_when_released
    return app

