"""What Slack requires of a message, checked on every message the Slack stand-in receives.

Block Kit's limits (https://docs.slack.dev/reference/block-kit/blocks): 50 blocks a message,
section text 3,000 characters, 10 fields of 2,000, header 150, context 10 elements, actions 25
elements, button text 75, button value 2,000, ``action_id`` and ``block_id`` 255, and a
message's ``text`` 40,000.  And mrkdwn formatting (https://docs.slack.dev/messaging/formatting-message-text):
``&``, ``<`` and ``>`` in text must be escaped as ``&amp;``, ``&lt;``, ``&gt;``; what remains in
angle brackets must be Slack markup, and a user mention ``<@…>`` must name a Slack user id
(``<@github:octocat>`` is the broken mention of issue 19).  ``problems`` answers with each
failure as ``json-pointer:PATH: what``, the form Slack's ``invalid_blocks`` errors take.
"""

from __future__ import annotations

import re
from typing import Any

CHECKED = {"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"}
LIMITS = {"blocks": 50, "section": 3000, "fields": 10, "field": 2000, "header": 150, "context": 10,
          "actions": 25, "button": 75, "value": 2000, "id": 255, "text": 40_000}
# Slack markup in angle brackets: mentions, channels, groups, special mentions, dates and links.
MARKUP = re.compile(r"<(?:@[UW][A-Z0-9]+|#C[A-Z0-9]+(?:\|[^<>]*)?|!subteam\^[A-Z0-9]+(?:\|[^<>]*)?"
                    r"|!(?:here|channel|everyone)|!date\^[^<>]+|(?:https?|mailto):[^<>|\s]+(?:\|[^<>]+)?)>")
ENTITY = re.compile(r"&(?:amp|lt|gt);")


def problems(method: str, args: dict[str, Any]) -> list[str]:
    """Every way ``args`` (a ``method`` call's arguments) breaks Slack's rules; [] when none."""
    if method not in CHECKED:
        return []
    found: list[str] = []
    text = args.get("text")
    if isinstance(text, str):
        if len(text) > LIMITS["text"]:
            found.append(f"json-pointer:/text: {len(text)} characters, more than {LIMITS['text']}")
        if args.get("mrkdwn", True) not in (False, "false"):
            found += _mrkdwn(text, "/text")
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        return found  # a form-encoded body the stand-in could not read as JSON: Slack's own error
    if blocks is not None:
        if len(blocks) > LIMITS["blocks"]:
            found.append(f"json-pointer:/blocks: {len(blocks)} blocks, more than {LIMITS['blocks']}")
        for i, block in enumerate(blocks):
            found += _block(block, f"/blocks/{i}")
    return found


def _too_long(value: str, limit: str, where: str) -> list[str]:
    if len(value) > LIMITS[limit]:
        return [f"json-pointer:{where}: {len(value)} characters, more than {LIMITS[limit]}"]
    return []


def _text(obj: dict[str, Any], limit: str, where: str) -> list[str]:
    value = str(obj.get("text", ""))
    found = _too_long(value, limit, f"{where}/text")
    if obj.get("type") == "mrkdwn":
        found += _mrkdwn(value, f"{where}/text")
    return found


def _mrkdwn(text: str, where: str) -> list[str]:
    """Unescaped ``&``, ``<`` or ``>``, and angle brackets that are not Slack markup (a ``>``
    that starts a line is a block quote)."""
    rest = MARKUP.sub("", re.sub(r"^>", "", text, flags=re.M))
    found = [f"json-pointer:{where}: {match.group()!r} is not Slack markup (escape < as &lt;)"
             for match in re.finditer(r"<[^<>]*>", rest)]
    rest = re.sub(r"<[^<>]*>", "", rest)
    if "<" in rest or ">" in rest:
        found.append(f"json-pointer:{where}: an unescaped < or > (escape them as &lt; and &gt;)")
    if "&" in ENTITY.sub("", rest):
        found.append(f"json-pointer:{where}: an unescaped & (escape it as &amp;)")
    return found


def _block(block: dict[str, Any], where: str) -> list[str]:
    found = _too_long(str(block.get("block_id", "")), "id", f"{where}/block_id")
    kind = block.get("type")
    if kind == "section":
        if "text" in block:
            found += _text(block["text"], "section", f"{where}/text")
        fields = block.get("fields", [])
        if len(fields) > LIMITS["fields"]:
            found.append(f"json-pointer:{where}/fields: {len(fields)} fields, more than {LIMITS['fields']}")
        for i, field in enumerate(fields):
            found += _text(field, "field", f"{where}/fields/{i}")
    elif kind == "header":
        if block["text"].get("type") != "plain_text":
            found.append(f"json-pointer:{where}/text/type: a header's text must be plain_text")
        found += _text(block["text"], "header", f"{where}/text")
    elif kind == "context":
        elements = block.get("elements", [])
        if len(elements) > LIMITS["context"]:
            found.append(f"json-pointer:{where}/elements: {len(elements)} elements, more than {LIMITS['context']}")
        for i, element in enumerate(elements):
            if element.get("type") in ("mrkdwn", "plain_text"):
                found += _text(element, "section", f"{where}/elements/{i}")
    elif kind == "actions":
        elements = block.get("elements", [])
        if len(elements) > LIMITS["actions"]:
            found.append(f"json-pointer:{where}/elements: {len(elements)} elements, more than {LIMITS['actions']}")
        for i, element in enumerate(elements):
            at = f"{where}/elements/{i}"
            found += _text(element.get("text", {}), "button", f"{at}/text")
            found += _too_long(str(element.get("value", "")), "value", f"{at}/value")
            found += _too_long(str(element.get("action_id", "")), "id", f"{at}/action_id")
    return found
