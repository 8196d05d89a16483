"""What each request to ``/slack/events`` was, for ``wasmbot_webhook_deliveries_total``.

bolt verifies signatures inside its middleware and says only "invalid request"; this repeats
its check with the same slack_sdk verifier, before the request goes to bolt, to tell a forgery
(``bad_signature``) from a replay of a signed request (``replayed``: its timestamp is outside
Slack's five-minute window).  A request is a ``duplicate`` when its delivery (an event's
``event_id``, a command's or interaction's ``trigger_id``) was seen before: Slack retries what
it thinks went unanswered.  bolt still answers every request as it always did.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from typing import Any

from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

from workers.store import JobStore

WINDOW = 5 * 60  # seconds: what bolt accepts between Slack's timestamp and now
DELIVERY_TTL = 3600.0  # Slack retries a delivery three times within a few minutes


class Malformed(ValueError):
    """A signed body that is not what its content type says; bolt would fail on it."""


def refusal(verifier: SignatureVerifier, body: str, headers: dict[str, str], now: float) -> str | None:
    """``bad_signature`` or ``replayed`` when bolt will refuse the request, else None."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not timestamp.isdigit() or not signature:
        return "bad_signature"
    expected = verifier.generate_signature(timestamp=timestamp, body=body) or ""
    if not hmac.compare_digest(expected, signature):
        return "bad_signature"
    return "replayed" if abs(now - int(timestamp)) > WINDOW else None


def parse(body: str, content_type: str | None) -> dict[str, Any]:
    """The body as bolt reads it; ``Malformed`` with the reason when it cannot be read."""
    try:
        parsed = parse_body(body, content_type)
    except ValueError as exc:
        raise Malformed(f"the body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise Malformed("the body is JSON but not an object")
    return parsed


async def outcome(store: JobStore, verifier: SignatureVerifier, body: str, headers: dict[str, str],
                  content_type: str | None) -> str:
    """The request's outcome; raises ``Malformed`` (outcome ``invalid``) for an unreadable body."""
    refused = refusal(verifier, body, {k.lower(): v for k, v in headers.items()}, time.time())
    if refused:
        return refused
    parsed = parse(body, content_type)
    if not ({"command", "type", "ssl_check"} & parsed.keys()):
        return "invalid"  # neither a command, an interaction nor an event: bolt has no listener for it
    delivery = parsed.get("event_id") or parsed.get("trigger_id")
    if delivery:
        mine = uuid.uuid4().hex
        held = await asyncio.to_thread(store.claim_key, f"slack-delivery:{delivery}", mine, DELIVERY_TTL)
        if held != mine:
            return "duplicate"
    return "accepted"
