"""``POST /github/webhook``: verify, de-duplicate, route (the bedevere/gidgethub pattern).

The ``X-Hub-Signature-256`` HMAC of the raw body is checked in constant time before the body
is parsed; without a configured secret the endpoint is not served at all (fail closed).  A
delivery id seen before is answered 200 and not handled again, so a redelivery never starts
a second job.  Events without a handler are answered 202 and ignored.  The handlers (one
module per event, bot/github/routes.py) only submit jobs or record work; workers and
background tasks do the slow part, so no GitHub call is made before the answer.  Every
delivery is counted in ``wasmbot_webhook_deliveries_total`` by what was made of it.

What an acknowledgement promises is in the store before the answer: the delivery's claim,
and whatever a handler records (a job, a comment's commands).  Only the delivery's count is
added after it, with the counts of the deliveries answered in the next 50 ms
(``DeliveryCounts``): a count is best effort.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from gidgethub import sansio

from bot.github.answering import CommentAnswerer
from bot.github.payload import parse
from bot.github.reporter import Reporter
from bot.github.routes import router
from bot.httpbody import read_body
from workers import github_client
from workers.config import Settings
from workers.metrics import DELIVERIES, OUTCOMES, series
from workers.store import JobStore, open_store

log = logging.getLogger(__name__)
DELIVERY_TTL = 7 * 24 * 3600.0  # GitHub lets a delivery be redelivered for a few days
LINGER = 0.05  # seconds a delivery's count waits for others to go to the store with


def configured(settings: Settings) -> bool:
    return settings.github_webhook_secret is not None and github_client.configured(settings)


def signature_ok(secret: bytes, body: bytes, header: str) -> bool:
    """``header`` is the HMAC-SHA256 of ``body`` under ``secret`` (compared in constant time)."""
    expected = b"sha256=" + hmac.digest(secret, body, "sha256").hex().encode()
    return hmac.compare_digest(expected, header.encode())


class DeliveryCounts:
    """Deliveries counted in memory and added to the store's counters a moment later.

    A delivery's count is not worth a store round trip before its answer, nor one of its own
    after it: the counts of ``LINGER`` seconds go to the store together.  Memory is bounded
    (one figure per outcome); a scrape (``flush``, bot/web.py) and ``close`` add what is
    pending first.  Counts pending when the process is killed are lost, as the count's
    best-effort contract allows."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.pending: Counter[str] = Counter()
        self.task: asyncio.Task[None] | None = None
        self.series = {outcome: series(DELIVERIES, "github", outcome) for outcome in OUTCOMES}

    def add(self, outcome: str) -> None:
        self.pending[self.series[outcome]] += 1
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            while self.pending:
                await asyncio.sleep(LINGER)
                await self.flush()
        finally:
            self.task = None

    async def flush(self) -> None:
        """Add the pending counts to the store now."""
        if not self.pending:
            return
        counts = {name: float(n) for name, n in self.pending.items()}
        self.pending = Counter()
        try:
            await self.store.add_counts_async(counts)
        except Exception as exc:  # the store is down: the deliveries themselves say so
            log.warning("could not count %d GitHub deliveries: %s", sum(counts.values()), exc)

    async def close(self) -> None:
        if self.task is not None:
            await self.task
        await self.flush()


class GitHubFrontEnd:
    def __init__(self, settings: Settings, store: JobStore | None = None, log_url: Any = None) -> None:
        assert settings.github_webhook_secret is not None
        self.settings = settings
        self.secret = settings.github_webhook_secret.get_secret_value().encode()
        self.store = store or open_store(settings)
        self.reporter = Reporter(settings, self.store, log_url)
        self.comments = CommentAnswerer(self)  # comment commands, answered after the webhook's 200
        self.counts = DeliveryCounts(self.store)
        # Dedupe claims need a value no other claimant uses; a random one per process, numbered.
        self._claim_values = map(f"{uuid.uuid4().hex}-{{}}".format, itertools.count())
        self.announce: Any = None  # set by the Slack front end: announce(job_id) for releases

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/github/webhook", self.webhook)
        app.on_startup.append(self._resume)
        app.on_cleanup.append(self._stop)

    async def _resume(self, _app: web.Application) -> None:
        for job in await asyncio.to_thread(self.store.active):
            if "github" in job.reports:
                self.reporter.follow(job.id)
        await self.comments.resume()

    async def _stop(self, _app: web.Application) -> None:
        await self.comments.close()
        await self.reporter.close()
        await self.counts.close()
        await self.store.close_async()

    async def webhook(self, request: web.Request) -> web.Response:
        outcome, response = await self._deliver(request)
        self.counts.add(outcome)
        return response

    async def _deliver(self, request: web.Request) -> tuple[str, web.Response]:
        """The delivery's answer, and its outcome for the deliveries metric.

        The signature is checked on the raw bytes before anything parses them; a body that
        cannot be read or is not what GitHub sends is a 4xx with the reason, never a 500."""
        for name in ("X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"):
            if len(request.headers.getall(name, [])) > 1:
                return "invalid", _answer(400, f"{name} is given more than once")
        event_name = request.headers.get("X-GitHub-Event")
        delivery = request.headers.get("X-GitHub-Delivery")
        signature = request.headers.get("X-Hub-Signature-256")
        if not event_name or not delivery:
            return "invalid", _answer(400, "X-GitHub-Event and X-GitHub-Delivery are required")
        try:
            body = await read_body(request, self.settings.web_github_max_body, self.settings.web_body_timeout)
        except web.HTTPException as exc:
            return "invalid", _answer(exc.status, exc.text or exc.reason)
        if not signature:
            return "bad_signature", _answer(401, "X-Hub-Signature-256 is missing: set the webhook's secret")
        if not signature_ok(self.secret, body, signature):
            log.warning("refused GitHub delivery %s: bad signature", delivery)
            return "bad_signature", _answer(401, "X-Hub-Signature-256 does not match: "
                                                 "check the webhook's secret")
        try:
            data = parse(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            return "invalid", _answer(400, f"the body is not JSON (set the webhook's content type "
                                           f"to application/json): {type(exc).__name__}")
        if not isinstance(data, Mapping):
            return "invalid", _answer(400, "the body is JSON but not an object")
        if event_name == "ping":
            return "accepted", web.json_response({"ok": True, "message": "pong", "zen": data.get("zen")})
        if not all(isinstance(data.get(key, ""), str) for key in ("action", "ref", "after")):
            return "invalid", _answer(422, "action, ref and after must be strings")
        mine = next(self._claim_values)
        holder = await self.store.claim_key_async(f"github-delivery:{delivery}", mine, DELIVERY_TTL)
        if holder != mine:
            return "duplicate", _answer(200, f"delivery {delivery} was handled already")
        event = sansio.Event(data, event=event_name, delivery_id=delivery)
        if not router.fetch(event):
            action = f".{data['action']}" if "action" in data else ""
            return "accepted", _answer(202, f"{event_name}{action} is ignored")
        try:
            await router.dispatch(event, self)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            # The handlers read the fields GitHub always sends; a payload without them is bad input.
            log.warning("GitHub delivery %s (%s) is not shaped as GitHub sends it: %r",
                        delivery, event_name, exc)
            return "invalid", _answer(422, f"the {event_name} payload lacks a field wasmbot reads or "
                                           f"has one of the wrong type ({type(exc).__name__}: {exc})")
        except Exception:
            log.exception("GitHub delivery %s (%s) failed", delivery, event_name)
            return "accepted", _answer(500, f"wasmbot could not handle delivery {delivery}; see its log")
        return "accepted", _answer(200, "handled")


def _answer(status: int, message: str) -> web.Response:
    body = orjson.dumps({"ok": status < 400, "message": message})
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")
