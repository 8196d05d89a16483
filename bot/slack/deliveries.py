"""The checks every request to ``/slack/events`` passes before slack-bolt sees it, in order.

1. The signature, on the raw bytes (Slack's v0 HMAC of ``v0:TIMESTAMP:BODY``, compared in
   constant time), then the timestamp window: nothing parses an unsigned or replayed body.
2. The body: UTF-8, a form or JSON content type, parsed the way bolt parses it (bolt's own
   ``AsyncBoltRequest``), an object, with the fields wasmbot's listeners read
   (bot/slack/shapes.py).  Each failure is a ``Refused`` with a 4xx status and the reason.
3. What it was, for ``wasmbot_webhook_deliveries_total``: ``duplicate`` when its delivery (an
   event's ``event_id``, a command's or interaction's ``trigger_id``) was seen before (Slack
   retries what it thinks went unanswered), ``invalid`` when bolt has no listener for it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping

from multidict import CIMultiDictProxy
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack import shapes
from workers.store import JobStore

WINDOW = 5 * 60  # seconds: what Slack (and bolt) accept between Slack's timestamp and now
DELIVERY_TTL = 3600.0  # Slack retries a delivery three times within a few minutes
CONTENT_TYPES = ("application/x-www-form-urlencoded", "application/json")
SIGNED_HEADERS = ("X-Slack-Request-Timestamp", "X-Slack-Signature", "Content-Type")


class Refused(Exception):
    """A request answered without bolt: its HTTP status, reason and outcome for the metric."""

    def __init__(self, status: int, reason: str, outcome: str = "invalid") -> None:
        super().__init__(reason)
        self.status, self.reason, self.outcome = status, reason, outcome


def verify(secret: str, body: bytes, headers: CIMultiDictProxy[str], now: float) -> None:
    """Raise ``Refused`` (401) unless ``body`` carries Slack's signature from the last five minutes."""
    for name in SIGNED_HEADERS:
        if len(headers.getall(name, [])) > 1:
            raise Refused(400, f"{name} is given more than once")
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not signature or not timestamp:
        raise Refused(401, "X-Slack-Signature and X-Slack-Request-Timestamp are required", "bad_signature")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise Refused(401, "X-Slack-Request-Timestamp is not a Unix time", "bad_signature")
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise Refused(401, "X-Slack-Signature does not match: check the signing secret", "bad_signature")
    if abs(now - int(timestamp)) > WINDOW:
        raise Refused(401, "X-Slack-Request-Timestamp is more than five minutes away", "replayed")


def bolt_request(secret: str, body: bytes, headers: CIMultiDictProxy[str], query: str,
                 now: float | None = None) -> AsyncBoltRequest:
    """The verified, parsed request for bolt; ``Refused`` with the reason when it is not one."""
    verify(secret, body, headers, time.time() if now is None else now)
    mime = headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if mime not in CONTENT_TYPES:
        raise Refused(415, f"Content-Type must be one of {', '.join(CONTENT_TYPES)}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the body is not UTF-8 (byte {exc.start})") from None
    flat: Mapping[str, str] = {k.lower(): v for k, v in headers.items()}
    try:
        request = AsyncBoltRequest(body=text, query=query, headers=dict(flat))
    except RecursionError:
        raise Refused(400, "the body is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError: the body or its payload field
        raise Refused(400, f"the body is not valid JSON: {exc}") from None
    except (TypeError, AttributeError, KeyError, IndexError) as exc:  # bolt's context reads a wrong shape
        raise Refused(400, f"the body is not shaped as Slack sends it ({type(exc).__name__})") from None
    if not isinstance(request.body, dict):
        raise Refused(400, "the body is JSON but not an object")
    problem = shapes.problem(request.body)
    if problem:
        raise Refused(400, f"the request is not shaped as Slack sends it: {problem}")
    return request


async def outcome(store: JobStore, request: AsyncBoltRequest) -> str:
    """``accepted``, ``duplicate`` (a delivery seen before) or ``invalid`` (no listener for it)."""
    body = request.body
    if not ({"command", "type", "ssl_check"} & body.keys()):
        return "invalid"  # neither a command, an interaction nor an event: bolt has no listener for it
    delivery = body.get("event_id") or body.get("trigger_id")
    if delivery and isinstance(delivery, str):
        mine = uuid.uuid4().hex
        held = await store.claim_key_async(f"slack-delivery:{delivery}", mine, DELIVERY_TTL)
        if held != mine:
            return "duplicate"
    return "accepted"
