"""Rendering hub pages: the Jinja2 environment, the context every template sees, the store."""

from __future__ import annotations

import time
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from bot.hub.session import viewer
from workers.config import Settings
from workers.store import JobStore, open_store

SETTINGS = web.AppKey("hub_settings", Settings)
TEMPLATES = web.AppKey("hub_templates", jinja2.Environment)


def when(ts: float | None) -> str:
    """A timestamp as people read it (UTC, to the second)."""
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def page_number(raw: str | None) -> int:
    """The ``page`` query parameter of a paged list (1 when absent); 400 when not a number."""
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        raise web.HTTPBadRequest(text="page must be a number\n") from None


def setup_templates(hub: web.Application) -> None:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.hub", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,  # a misspelt name fails, not renders empty
        trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["duration"] = duration
    hub[TEMPLATES] = env


def settings_of(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def store(request: web.Request) -> JobStore:
    """The process's job store (its calls block: run them through ``asyncio.to_thread``)."""
    return open_store(settings_of(request))


def context(request: web.Request) -> dict[str, Any]:
    """What every template sees besides its own values."""
    who = viewer(request)

    def csrf_field() -> Markup:
        token = who.csrf if who is not None else ""
        return Markup(f'<input type="hidden" name="csrf_token" value="{escape(token)}">')

    return {"viewer": who, "settings": settings_of(request), "csrf_field": csrf_field,
            "request_path": request.path_qs}


async def render(request: web.Request, template: str, *, status: int = 200, **values: Any) -> web.Response:
    """``template`` rendered with ``values`` and the common context, as an HTML response."""
    page = request.app[TEMPLATES].get_template(template)
    html = page.render(context(request) | values)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})
