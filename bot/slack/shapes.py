"""The fields wasmbot's Slack listeners read, checked before bolt runs them.

Slack always sends these; a signed body without them (a test tool, a bug, a replayed and
edited request) would fail inside a listener, which bolt answers with a 500.  ``problem`` says
what is wrong so the sender gets a 400 with the reason instead.  Other fields are not checked:
bolt's context builders read them defensively.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_LOOSE = ConfigDict(extra="allow")


class _Id(BaseModel):
    model_config = _LOOSE
    id: str | None = None
    team_id: str | None = None
    enterprise_id: str | None = None


class Command(BaseModel):
    model_config = _LOOSE
    command: str
    text: str = ""
    user_id: str
    channel_id: str | None = None
    team_id: str | None = None
    enterprise_id: str | None = None
    trigger_id: str | None = None
    response_url: str | None = None


class _Action(BaseModel):
    model_config = _LOOSE
    action_id: str
    value: str = ""


class _User(BaseModel):
    model_config = _LOOSE
    id: str
    team_id: str | None = None


class BlockActions(BaseModel):
    model_config = _LOOSE
    type: str
    user: _User
    actions: list[_Action] = Field(min_length=1)
    channel: _Id | None = None
    team: _Id | None = None
    enterprise: _Id | None = None
    trigger_id: str | None = None
    response_url: str | None = None


class _Event(BaseModel):
    model_config = _LOOSE
    type: str
    ts: str | None = None
    text: str | None = None
    subtype: str | None = None
    thread_ts: str | None = None
    bot_id: str | None = None
    channel_type: str | None = None
    message: dict[str, Any] | None = None
    previous_message: dict[str, Any] | None = None


class _View(BaseModel):
    model_config = _LOOSE
    type: str | None = None
    callback_id: str


class Any_(BaseModel):
    """What bolt's middleware and listener matchers read from any request, whatever its type."""

    model_config = _LOOSE
    type: str | None = None
    command: str | None = None
    event: _Event | None = None
    actions: list[_Action] | None = None
    view: _View | None = None
    callback_id: str | None = None
    action_id: str | None = None
    workflow_step: dict[str, Any] | None = None


class EventCallback(BaseModel):
    model_config = _LOOSE
    type: str
    event: _Event
    event_id: str | None = None


class UrlVerification(BaseModel):
    model_config = _LOOSE
    type: str
    challenge: str


_BY_TYPE: dict[str, type[BaseModel]] = {
    "block_actions": BlockActions, "event_callback": EventCallback, "url_verification": UrlVerification,
}


def _first_error(model: type[BaseModel], body: dict[str, Any]) -> str | None:
    try:
        model.model_validate(body, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        return f"{where}: {first['msg']}"
    return None


def problem(body: dict[str, Any]) -> str | None:
    """Why ``body`` is not a request wasmbot's listeners can read, or None when it is."""
    null = next((key for key in Any_.model_fields if key in body and body[key] is None), None)
    if null:
        return f"{null}: must not be null"  # bolt reads body.get(key, {}) as an object
    wrong = _first_error(Any_, body)
    if wrong:
        return wrong
    model = Command if "command" in body else _BY_TYPE.get(body.get("type") or "")
    return _first_error(model, body) if model else None  # no model: bolt has no listener, 404
